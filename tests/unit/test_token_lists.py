"""Token lists: reserved slots, refusal to overwrite, sentencepiece ids = token list ids."""

from __future__ import annotations

import pytest

from zipper.data.kaldi_dir import write_kv
from zipper.tokens.text_tokenizer import TextTokenizer, train_sentencepiece
from zipper.tokens.token_list import (ASR, BOS, EOS, NUM_SPECIAL, PAD, SPECIAL_TOKENS, TokenList, unit_tokens,
                                      write_token_list)
from zipper.utils.provenance import ProvenanceError

SENTENCES = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine",
             "all that glitters is not gold", "the early bird catches the worm",
             "actions speak louder than words", "better late than never at all"]


def text_file(tmp_path, sentences=SENTENCES, repeat=20):
    path = tmp_path / "text"
    write_kv(path, {f"text-{i:05d}": s for i, s in enumerate(sentences * repeat)})
    return path


def test_unit_token_list_layout(tmp_path):
    tokens = unit_tokens(4)
    assert tokens == list(SPECIAL_TOKENS) + ["0", "1", "2", "3"]
    write_token_list(tmp_path / "speech", tokens, {"kind": "speech", "kmeans_tag": "a"})
    tl = TokenList(tmp_path / "speech")
    assert len(tl) == NUM_SPECIAL + 4 and tl.index["3"] == NUM_SPECIAL + 3
    assert (tl.tokens[PAD], tl.tokens[BOS], tl.tokens[EOS]) == ("<pad>", "<bos>", "<eos>")


def test_token_list_refuses_to_overwrite_a_different_one(tmp_path):
    write_token_list(tmp_path / "speech", unit_tokens(4), {"kmeans_tag": "a"})
    write_token_list(tmp_path / "speech", unit_tokens(4), {"kmeans_tag": "a"})  # same: a no-op
    with pytest.raises(ProvenanceError, match="already holds a different token list"):
        write_token_list(tmp_path / "speech", unit_tokens(5), {"kmeans_tag": "a"})
    with pytest.raises(ProvenanceError, match="kmeans_tag"):
        write_token_list(tmp_path / "speech", unit_tokens(4), {"kmeans_tag": "b"})
    write_token_list(tmp_path / "speech", unit_tokens(5), {"kmeans_tag": "b"}, force=True)
    assert len(TokenList(tmp_path / "speech")) == NUM_SPECIAL + 5


def test_special_slots_are_checked_on_load(tmp_path):
    d = tmp_path / "bad"
    write_token_list(d, unit_tokens(2), {"kind": "speech"})
    (d / "tokens.txt").write_text("<unk>\n<pad>\n" + "\n".join(unit_tokens(2)[2:]) + "\n")
    with pytest.raises(ProvenanceError, match="first 8 tokens must be"):
        TokenList(d)


def test_sentencepiece_ids_index_the_token_list(tmp_path):
    prov = train_sentencepiece(text_file(tmp_path), tmp_path / "tok", vocab_size=60)
    tok = TextTokenizer(tmp_path / "tok")
    assert len(tok) == 60 == prov["vocab_size"]
    assert tok.token_list.tokens[:NUM_SPECIAL] == list(SPECIAL_TOKENS)
    ids = tok.encode("the lazy dog")
    assert all(i >= NUM_SPECIAL for i in ids)
    assert "".join(tok.token_list.tokens[i] for i in ids).replace("\u2581", " ").strip() == "the lazy dog"
    assert tok.decode([BOS] + ids + [EOS, PAD]) == "the lazy dog"
    assert ASR not in tok.encode("<asr> dog")  # task tags are control symbols: text never produces them


def test_char_tokenizer_keeps_every_character_or_says_which_it_drops(tmp_path):
    n_chars = len(set("".join(SENTENCES)) - {" "}) + 1  # + the word boundary piece
    train_sentencepiece(text_file(tmp_path), tmp_path / "c", vocab_size=NUM_SPECIAL + n_chars, model_type="char")
    tok = TextTokenizer(tmp_path / "c")
    assert len(tok) == NUM_SPECIAL + n_chars
    assert tok.decode(tok.encode("a lazy fox")) == "a lazy fox"
    assert len(tok.encode("a lazy fox")) == len("a lazy fox") + 1  # one piece per character, "▁" per word
    with pytest.raises(ValueError, match=r"leaves out the characters '.+': vocab_size %d keeps them all"
                       % (NUM_SPECIAL + n_chars)):
        train_sentencepiece(text_file(tmp_path), tmp_path / "small", vocab_size=NUM_SPECIAL + 10, model_type="char")
    assert not (tmp_path / "small" / "tokens.txt").exists()


def test_tokenizer_is_deterministic_and_refuses_other_data(tmp_path):
    train_sentencepiece(text_file(tmp_path), tmp_path / "a", vocab_size=60, seed=3)
    train_sentencepiece(text_file(tmp_path), tmp_path / "b", vocab_size=60, seed=3)
    assert (tmp_path / "a" / "tokens.txt").read_text() == (tmp_path / "b" / "tokens.txt").read_text()
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ProvenanceError, match="train_data_hash"):
        train_sentencepiece(text_file(other, SENTENCES[::-1] + ["one more line here"]), tmp_path / "a",
                            vocab_size=60, seed=3)
    with pytest.raises(ProvenanceError, match="vocab_size"):
        train_sentencepiece(text_file(tmp_path), tmp_path / "a", vocab_size=50, seed=3)


def test_tokenizer_refuses_a_swapped_model(tmp_path):
    train_sentencepiece(text_file(tmp_path), tmp_path / "a", vocab_size=60)
    other = tmp_path / "o"
    other.mkdir()
    train_sentencepiece(text_file(other, SENTENCES[:3] + ["zebras quietly yawn"]), tmp_path / "b", vocab_size=40)
    (tmp_path / "a" / "sentencepiece.model").write_bytes((tmp_path / "b" / "sentencepiece.model").read_bytes())
    with pytest.raises(ProvenanceError, match="is not the model its token list was made from"):
        TextTokenizer(tmp_path / "a")
