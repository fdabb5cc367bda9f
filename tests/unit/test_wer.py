"""WER scoring against alignments worked out by hand."""

from __future__ import annotations

import pytest

from zipper.scoring.wer import Normalizer, align, character_error_rate, format_alignment, write_scoring


def test_substitution_deletion_insertion_counts():
    refs = {"u1": "the cat sat on the mat", "u2": "hello world"}
    hyps = {"u1": "the cat sit on mat", "u2": "hello big world"}
    total, alignments = align(refs, hyps)
    # u1: sat->sit (S), second "the" missing (D); u2: "big" inserted (I)
    assert (total.snt, total.wrd, total.corr, total.sub, total.dele, total.ins) == (2, 8, 6, 1, 1, 1)
    assert total.err == 3 and total.wer == pytest.approx(37.5) and total.snt_err == 2
    assert alignments[0].pairs == [("C", "the", "the"), ("C", "cat", "cat"), ("S", "sat", "sit"),
                                   ("C", "on", "on"), ("D", "the", ""), ("C", "mat", "mat")]
    assert alignments[1].pairs == [("C", "hello", "hello"), ("I", "", "big"), ("C", "world", "world")]


def test_empty_and_missing_hypotheses_are_all_deletions():
    total, alignments = align({"u1": "a b c", "u2": "d e"}, {"u1": ""})
    assert (total.dele, total.wrd, total.wer, total.snt_err) == (5, 5, 100.0, 2)
    assert [op for op, _, _ in alignments[1].pairs] == ["D", "D"]


def test_all_insertions_can_exceed_100_percent():
    total, _ = align({"u": "yes"}, {"u": "no no no"})
    assert (total.sub, total.ins, total.wer) == (1, 2, 300.0)


def test_normalisation_lowercases_and_strips_punctuation_but_keeps_apostrophes():
    norm = Normalizer()
    assert norm("Hello, World!  Don't STOP.") == "hello world don't stop"
    total, _ = align({"u": "Hello, world."}, {"u": "hello world"})
    assert total.wer == 0.0
    assert Normalizer(lowercase=False)("Hello") == "Hello"
    with pytest.raises(ValueError, match="reference of 'u' is empty"):
        align({"u": "..."}, {"u": "x"})


def test_sclite_style_files(tmp_path):
    counts = write_scoring(tmp_path, "test", {"u1": "the cat sat", "u2": "a b"}, {"u1": "the bat sat now", "u2": ""})
    assert counts.wer == pytest.approx(100 * 4 / 5)
    result = (tmp_path / "result.txt").read_text().splitlines()
    assert result[1] == "| test | 2 | 5 | 40.0 | 20.0 | 40.0 | 20.0 | 80.0 | 100.0 |"
    errs = (tmp_path / "errs-test.txt").read_text()
    assert errs.startswith("%WER 80.00 [ 4 / 5, 1 ins, 2 del, 1 sub ]")
    assert "REF:  the CAT sat ***\nHYP:  the BAT sat NOW\n" in errs
    assert "u2:\thyp=[]" in (tmp_path / "recogs-test.txt").read_text()
    assert (tmp_path / "wer-summary-test.txt").read_text() == "settings\tWER\ntest\t80.00\n"


def test_alignment_format_marks_errors():
    _, alignments = align({"u": "a b c"}, {"u": "a x"})
    text = format_alignment(alignments[0])
    assert "REF:  a B C  \n" in text and "HYP:  a X ***\n" in text and "Eval:   S D  \n" in text


def test_per_utterance_counts_file(tmp_path):
    from zipper.scoring.wer import read_per_utt

    write_scoring(tmp_path, "test", {"a-1": "the cat sat", "a-2": "on the mat"}, {"a-1": "the cat sat down",
                                                                                   "a-2": "on a"})
    assert (tmp_path / "per_utt.tsv").read_text() == ("utt\tref_words\terrors\tsub\tdel\tins\n"
                                                      "a-1\t3\t1\t0\t0\t1\n" "a-2\t3\t2\t1\t1\t0\n")
    assert read_per_utt(tmp_path / "per_utt.tsv") == {"a-1": (3, 1), "a-2": (3, 2)}
    (tmp_path / "per_utt.tsv").write_text("utt\tref_words\terrors\tsub\tdel\tins\na-1\t3\tx\t0\t0\t1\n")
    with pytest.raises(ValueError, match=r"per_utt.tsv:2: expected 6 tab-separated fields"):
        read_per_utt(tmp_path / "per_utt.tsv")


def test_character_error_rate_counts_characters_after_normalisation():
    refs, hyps = {"a": "Hello, World", "b": "ok"}, {"a": "hello world"}  # "b" missing: all its characters deleted
    # normalised: "hello world" (11 characters) + "ok" (2); only "ok" is wrong
    assert character_error_rate(refs, hyps, Normalizer()) == pytest.approx(100 * 2 / 13)
    # raw text: the case and the comma count as errors too
    assert character_error_rate(refs, hyps) > character_error_rate(refs, hyps, Normalizer())
