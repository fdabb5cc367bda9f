"""The sentence normaliser, splitter and the parsers of the Debian text packages (on tiny fake files)."""

from __future__ import annotations

import collections
import gzip
import shutil
from pathlib import Path

import pytest

from zipper.corpora import text_sources as ts
from zipper.corpora.text_sources import SourcePaths, TextSourceError, normalize_sentence, split_sentences


# ------------------------------------------------------------------------------------------------------
# normalize_sentence
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, spoken, norm", [
    ("In the beginning God created the heaven and the earth.",
     "In the beginning God created the heaven and the earth.", "in the beginning god created the heaven and the earth"),
    ("Don't panic,   it's only a towel!", "Don't panic, it's only a towel!", "don't panic it's only a towel"),
    ("A well-known man -- or so they say -- came home", "A well known man, or so they say, came home.",
     "a well known man or so they say came home"),
    ('"Is a car male or female?" he began asking.', "Is a car male or female? he began asking.", None),
    ("'Tis the season of the dogs' dinner, said he.", "Tis the season of the dogs dinner, said he.",
     "tis the season of the dogs dinner said he"),
    ("The caf\u00e9 served na\u00efve tourists every \u201cmorning\u201d.",
     "The cafe served naive tourists every morning.", "the cafe served naive tourists every morning"),
    ("Any plant (of the family) with an orchid ; or so", "Any plant of the family with an orchid; or so.",
     "any plant of the family with an orchid or so"),
    ("Why did the Roman Empire collapse?", "Why did the Roman Empire collapse?", "why did the roman empire collapse"),
])
def test_normalize_keeps_speakable_sentences(raw, spoken, norm):
    result = normalize_sentence(raw)
    if norm is None:  # internal '?' (a quoted question inside the sentence) is dropped
        assert result is None
        return
    assert result == (spoken, norm)
    # the synthesizer reads exactly the transcript's words
    assert " ".join(w.strip(",;:.!?").lower() for w in result[0].split()) == result[1]


@pytest.mark.parametrize("raw", [
    "He paid 42 dollars for the old blue car.",             # digits
    "Fish & chips are served here every single day.",        # symbol read out
    "It rose by fifty % over the whole last year.",
    "Send it all to www.example.com before the end.",       # url
    "Visit http: the site for more of the same news",
    "I saw Dr. Smith in the park on Sunday morning.",       # abbreviation inside
    "Well... I think that is quite enough for today.",      # ellipsis
    "The NASA engineers launched the rocket at dawn.",      # acronym (spelled out)
    "After your lover has gone you will still have PEANUT BUTTER!",
    "Too short to keep.",                                    # < 5 words
    " ".join(["word"] * 21),                                 # > 20 words
    "Q: what is the difference between them all?",          # single letters are spelled
    "The answer lies in the \u4e2d\u6587 text of the book.",  # non-Latin letters
    "A path like foo/bar is not something to read aloud.",
    "The price was $ five for the whole lot of them.",
])
def test_normalize_drops_what_a_synthesizer_would_not_read_as_written(raw):
    assert normalize_sentence(raw) is None


def test_normalize_word_limits():
    assert normalize_sentence("one two three four", min_words=4, max_words=4)[1] == "one two three four"
    assert normalize_sentence("one two three four five", min_words=4, max_words=4) is None
    assert normalize_sentence("one two three four", min_words=5) is None


# ------------------------------------------------------------------------------------------------------
# split_sentences
# ------------------------------------------------------------------------------------------------------
def test_split_sentences():
    text = 'He came.  She left!  "Why?" he asked. And then it was over'
    assert split_sentences(text) == ["He came.", "She left!", '"Why?"', "he asked.", "And then it was over"]


def test_split_glues_abbreviations_and_initials_so_that_they_are_dropped():
    pieces = split_sentences("We met Mr. Brown at noon. J. R. Smith wrote it. Fine day.")
    assert pieces == ["We met Mr. Brown at noon.", "J. R. Smith wrote it.", "Fine day."]
    assert [normalize_sentence(p, min_words=2) for p in pieces[:2]] == [None, None]


# ------------------------------------------------------------------------------------------------------
# Source parsers on fake files
# ------------------------------------------------------------------------------------------------------
FORTUNE_DB = """\
A day for firm decisions and for wise old men.
%
Old musicians never die, they just decompose in peace.
		-- Anonymous, "The Collected Sayings of Many
		Famous and Forgotten People", page one
%
Q: Why did the chicken cross the road?
A: To get to the other side of it.

It was a very good joke once.
%
"""


def test_parse_fortunes_drops_attributions_and_splits_paragraphs():
    assert list(ts.parse_fortunes(FORTUNE_DB)) == [
        "A day for firm decisions and for wise old men.",
        "Old musicians never die, they just decompose in peace.",
        "Q: Why did the chicken cross the road? A: To get to the other side of it.",
        "It was a very good joke once.",
    ]


def test_fortune_files_skip_indexes_links_offensive_and_non_english(tmp_path):
    (tmp_path / "wisdom").write_text(FORTUNE_DB)
    (tmp_path / "wisdom.dat").write_bytes(b"\x00\x01")
    (tmp_path / "wisdom.u8").symlink_to("wisdom")
    (tmp_path / "ascii-art").write_text("  /\\_/\\\n%\n")
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "rude").write_text("Something rude and not for us.\n%\n")
    assert [p.name for p in ts.fortune_files(tmp_path)] == ["wisdom"]


WORDNET_DATA = (
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    "00022316 29 v 05 sedate 0 calm 0 tranquilize 0 009 @ 00019448 v 0000 01 + 09 00 | cause to be calm or "
    "quiet as by administering a sedative to; \"The patient must be sedated before the operation\"  \n"
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | (philosophy) that which is perceived or known or "
    "inferred to have its own distinct existence (living or nonliving)  \n"
)


def test_parse_wordnet_data_splits_glosses_and_examples():
    assert list(ts.parse_wordnet_data(WORDNET_DATA.splitlines(True))) == [
        "cause to be calm or quiet as by administering a sedative to",
        "The patient must be sedated before the operation",
        "that which is perceived or known or inferred to have its own distinct existence",
    ]


GCIDE_TEXT = """\
00-database-info
   This dictionary text is a license preamble and not to be used at all.

Affect \\Af*fect"\\, v. t. [imp. & p. p. {Affected}; p. pr. & vb.
   n. {Affecting}.] [L. affectus, p. p. of afficere; ad + facere
   to make. See {Fact}.]
   1. To act upon; to produce an effect or change upon.
      [1913 Webster]

            The climate affected their health and spirits.
                                                  --Macaulay.
      [1913 Webster]

   Syn: To influence; operate; act on; concern; move; melt.
        [1913 Webster]

Apple \\Ap"ple\\ ([a^]p"p'l), n. [OE. appel, AS. [ae]ppel.]
   1. The fleshy pome or fruit of a rosaceous tree ({Pyrus
      malus}) cultivated in numberless varieties.
      [1913 Webster]

   Note: The European crab apple is supposed to be the original
         kind, from which all the others have sprung.
         [1913 Webster]

            This proud man affects imperial ?way. --Dryden.
      [1913 Webster]

   {Apple of discord}, a subject of contention and envy among caf['e] friends.
"""


def test_parse_gcide_keeps_definitions_notes_and_quotations():
    passages = list(ts.parse_gcide(GCIDE_TEXT.splitlines(True)))
    assert passages[:4] == [
        "To act upon; to produce an effect or change upon.",
        "The climate affected their health and spirits.",
        "The fleshy pome or fruit of a rosaceous tree cultivated in numberless varieties.",
        "The European crab apple is supposed to be the original kind, from which all the others have sprung.",
    ]
    # unknown characters and glued accent codes make the sentence unusable rather than silently mangled
    assert [normalize_sentence(p) for p in passages[4:]] == [None, None]
    assert not any("preamble" in p or "influence" in p for p in passages)


def test_gcide_dictzip_is_read_as_gzip(tmp_path):
    path = tmp_path / "gcide.dict.dz"
    with gzip.open(path, "wt") as f:
        f.write(GCIDE_TEXT)
    assert list(ts.gcide_passages(path))[1] == "The climate affected their health and spirits."


def test_parse_bible_dump_writes_lord_as_a_word():
    lines = ["Ge1:1 In the beginning God created the heaven and the earth.\n",
             "1Sa3:9 Speak, LORD; for thy servant heareth.\n", "not a verse line\n"]
    assert list(ts.parse_bible_dump(lines)) == ["In the beginning God created the heaven and the earth.",
                                                "Speak, Lord; for thy servant heareth."]


@pytest.mark.skipif(shutil.which("bible") is None, reason="bible-kjv is not installed")
def test_real_bible_dump_has_every_verse():
    verses = list(ts.bible_passages())
    assert len(verses) == 31102
    assert verses[-1] == "The grace of our Lord Jesus Christ be with you all. Amen."


# ------------------------------------------------------------------------------------------------------
# The pool
# ------------------------------------------------------------------------------------------------------
def fake_sources(root: Path) -> SourcePaths:
    (root / "fortunes").mkdir(parents=True)
    (root / "fortunes" / "wisdom").write_text(FORTUNE_DB + "A day for firm decisions and for wise old men.\n%\n")
    (root / "wordnet").mkdir()
    for part in ts.WORDNET_PARTS:
        (root / "wordnet" / f"data.{part}").write_text(WORDNET_DATA if part == "noun" else "")
    (root / "gcide.txt").write_text(GCIDE_TEXT)
    return SourcePaths(fortune_dir=str(root / "fortunes"), gcide=str(root / "gcide.txt"),
                       wordnet_dir=str(root / "wordnet"), bible_cmd="no-such-bible-command")


def test_build_pool_deduplicates_and_drops_rare_words(tmp_path):
    paths = fake_sources(tmp_path)
    pool, stats = ts.build_pool(["fortunes", "wordnet", "gcide"], paths, min_word_count=1)
    norms = [s.norm for s in pool]
    assert len(norms) == len(set(norms))
    assert norms.count("a day for firm decisions and for wise old men") == 1
    assert stats.duplicates["fortunes"] == 1
    assert {s.source for s in pool} == {"fortunes", "wordnet", "gcide"}
    assert pool == ts.build_pool(["fortunes", "wordnet", "gcide"], paths, min_word_count=1)[0]  # deterministic
    # with a minimum count, sentences holding a word seen once go
    rare_pool, rare_stats = ts.build_pool(["fortunes", "wordnet", "gcide"], paths, min_word_count=2)
    assert len(rare_pool) < len(pool) and sum(rare_stats.rare.values()) == len(pool) - len(rare_pool)
    assert all(s.source in ("fortunes", "wordnet", "gcide") for s in rare_pool)


def test_build_pool_closed_vocabulary(tmp_path):
    paths = fake_sources(tmp_path)
    pool, _ = ts.build_pool(["fortunes", "wordnet", "gcide"], paths, min_word_count=1)
    counts = collections.Counter(w for s in pool for w in s.norm.split())
    top = set(sorted(counts, key=lambda w: (-counts[w], w))[:70])
    small, stats = ts.build_pool(["fortunes", "wordnet", "gcide"], paths, min_word_count=1, max_vocab=70)
    assert small == [s for s in pool if set(s.norm.split()) <= top]  # exactly the sentences within the top 70
    assert 0 < len(small) < len(pool) and sum(stats.rare.values()) == len(pool) - len(small)


def test_pool_round_trips(tmp_path):
    pool, _ = ts.build_pool(["fortunes", "wordnet"], fake_sources(tmp_path), min_word_count=1)
    ts.write_pool(tmp_path / "pool.tsv", pool)
    assert ts.read_pool(tmp_path / "pool.tsv") == pool


def test_missing_sources_are_named(tmp_path):
    paths = SourcePaths(fortune_dir=str(tmp_path / "nope"), gcide=str(tmp_path / "gcide.dict.dz"),
                        wordnet_dir=str(tmp_path), bible_cmd="no-such-bible-command")
    with pytest.raises(TextSourceError) as e:
        ts.build_pool(list(ts.SOURCES), paths)
    message = str(e.value)
    for what in ("bible-kjv", "fortunes", "dict-gcide", "wordnet-base", "tools/install.sh"):
        assert what in message
