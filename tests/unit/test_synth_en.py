"""synth_en: voice inventory, set allocation (disjoint, nested, held-out voices, seeded) and synthesis."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from zipper.corpora import synth_en, voices
from zipper.corpora.synth_en import PlanItem, SetSizes, SynthError
from zipper.corpora.text_sources import Sentence
from zipper.corpora.voices import Voice, VoiceError
from zipper.data.subset import nested_fractions


# ------------------------------------------------------------------------------------------------------
# Voices
# ------------------------------------------------------------------------------------------------------
def test_inventory_has_every_accent_variant_and_flite_voice():
    inv = voices.voice_inventory()
    assert len(inv) == len(voices.ESPEAK_ACCENTS) * len(voices.ESPEAK_VARIANTS) + len(voices.FLITE_VOICES)
    spks = [v.spk for v in inv]
    assert spks == sorted(spks) and "es-enus-m3" in spks and "fl-slt" in spks
    voices.check_speaker_ids(spks)
    by = {v.spk: v for v in inv}
    assert by["es-enus-m3"].voice == "en-us+m3" and by["es-enus-m3"].gender == "m"
    assert by["es-ensco-f2"].voice == "en-gb-scotland+f2" and by["es-ensco-f2"].gender == "f"
    assert by["fl-slt"].engine == "flite" and by["fl-slt"].gender == "f"
    assert all(not v.voice.startswith("mb") for v in inv)
    # base speed/pitch depend on the speaker only, and stay in range
    assert voices.voice_inventory() == inv
    for v in inv:
        if v.engine == "espeak":
            assert 145 <= v.speed <= 190 and 32 <= v.pitch <= 68
        else:
            assert 0.9 <= v.speed <= 1.15 and 50 < v.pitch < 250
    assert len({(v.speed, v.pitch) for v in inv}) > len(inv) * 0.8


@pytest.mark.parametrize("spks", [["fl-kal", "fl-kal-x"], ["Es-enus"], ["es_enus"], ["a", "a"]])
def test_bad_speaker_ids_are_refused(spks):
    with pytest.raises(VoiceError):
        voices.check_speaker_ids(spks)


def test_heldout_has_both_engines_and_depends_on_seed():
    inv = voices.voice_inventory()
    held = [v for v in voices.select_heldout(inv, 6, seed=1) if v.heldout]
    assert len(held) == 6 and {v.engine for v in held} == {"espeak", "flite"}
    assert voices.select_heldout(inv, 6, seed=1) == voices.select_heldout(inv, 6, seed=1)
    assert voices.select_heldout(inv, 6, seed=1) != voices.select_heldout(inv, 6, seed=2)
    assert not any(v.heldout for v in voices.select_heldout(inv, 0, seed=1))
    with pytest.raises(VoiceError):
        voices.select_heldout(inv, len(inv), seed=1)


def test_voices_txt_round_trips():
    inv = voices.select_heldout(voices.voice_inventory(), 4, seed=3)
    assert voices.parse_voices(voices.format_voices(inv)) == inv


def test_utterance_prosody_varies_a_little_around_the_base():
    v = voices.espeak_voice("engb", "f3")
    values = {voices.utterance_prosody(v, f"{v.spk}-{i:07d}") for i in range(50)}
    assert len(values) > 10
    assert all(abs(s - v.speed) <= 0.07 * v.speed and abs(p - v.pitch) <= 5 for s, p in values)
    assert voices.utterance_prosody(v, "x") == voices.utterance_prosody(v, "x")
    rms = voices.flite_voice("rms")
    assert voices.flite_pitch_by_sox(rms) and not voices.flite_pitch_by_sox(voices.flite_voice("slt"))
    assert voices.sox_pitch_cents(rms, voices.FLITE_VOICES["rms"][1] * 2) == 1200


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("flite") is None,
                    reason="espeak-ng or flite is not installed")
def test_every_voice_of_the_inventory_is_installed():
    voices.check_voices_installed(voices.voice_inventory())
    with pytest.raises(VoiceError, match="xx-yy"):
        voices.check_voices_installed([Voice("es-x-m1", "espeak", "xx-yy+m1", "m", 170, 50)])


# ------------------------------------------------------------------------------------------------------
# Allocation
# ------------------------------------------------------------------------------------------------------
def fake_pool(n: int = 400) -> list[Sentence]:
    return [Sentence(["bible", "gcide"][i % 2], f"sentence number {i} has six words", "x") for i in range(n)]


SIZES = SetSizes(train_text_words=300, train_speech_utts=60, train_paired_utts=50, dev_utts=10, test_utts=20,
                 test_heldout_share=0.5, flite_share=0.25)


@pytest.fixture(scope="module")
def inventory() -> list[Voice]:
    return voices.select_heldout(voices.voice_inventory(), 5, seed=11)


def test_sets_have_disjoint_sentences_and_the_requested_sizes(inventory):
    alloc = synth_en.allocate(fake_pool(), inventory, SIZES, seed=5)
    sentences = {name: [u.sentence for u in utts] for name, utts in alloc.sets.items()}
    all_used = [i for s in sentences.values() for i in s]
    assert len(all_used) == len(set(all_used))
    assert {k: len(v) for k, v in sentences.items() if k != "train_text"} == {
        "dev": 10, "test": 20, "train_paired": 50, "train_speech": 60}
    assert len(sentences["train_text"]) == 50  # 6 words each: the first to reach 300 words
    for name, utts in alloc.sets.items():
        assert [u.utt for u in utts] == sorted(u.utt for u in utts)
        assert all(u.utt.startswith(u.spk + "-") and u.set == name for u in utts)
    assert {u.spk for u in alloc.sets["train_text"]} == {synth_en.TEXT_SPEAKER}


def test_heldout_voices_read_only_test(inventory):
    alloc = synth_en.allocate(fake_pool(), inventory, SIZES, seed=5)
    held = {v.spk for v in inventory if v.heldout}
    for name in ("dev", "train_paired", "train_speech"):
        assert not held & {u.spk for u in alloc.sets[name]}
    test_held = [u for u in alloc.sets["test"] if u.spk in held]
    assert len(test_held) == 10
    flite = [u for u in alloc.sets["train_speech"] if u.spk.startswith("fl-")]
    assert len(flite) == 15  # flite_share of 60


def test_allocation_is_deterministic_given_the_seed(inventory):
    a = synth_en.allocate(fake_pool(), inventory, SIZES, seed=5)
    assert a == synth_en.allocate(fake_pool(), inventory, SIZES, seed=5)
    assert a != synth_en.allocate(fake_pool(), inventory, SIZES, seed=6)


def test_bigger_training_sets_leave_dev_and_test_alone(inventory):
    a = synth_en.allocate(fake_pool(), inventory, SIZES, seed=5)
    bigger = SetSizes(**{**SIZES.__dict__, "train_speech_utts": 120, "train_text_words": 600})
    b = synth_en.allocate(fake_pool(), inventory, bigger, seed=5)
    assert a.sets["dev"] == b.sets["dev"] and a.sets["test"] == b.sets["test"]


def test_the_vocoder_set_rereads_train_speech_in_one_voice_and_changes_no_other_set(inventory):
    spk = next(v.spk for v in inventory if v.engine == "flite" and not v.heldout)
    sizes = SetSizes(**{**SIZES.__dict__, "vocoder_utts": 30, "vocoder_speaker": spk})
    plain, alloc = synth_en.allocate(fake_pool(), inventory, SIZES, 5), synth_en.allocate(fake_pool(), inventory, sizes, 5)
    vocoder = alloc.sets.pop(synth_en.VOCODER_SET)
    assert alloc == plain  # drawn after the rest
    assert len(vocoder) == 30 and {u.spk for u in vocoder} == {spk} and {u.set for u in vocoder} == {"train_vocoder"}
    sentences = [u.sentence for u in vocoder]
    assert len(set(sentences)) == 30 and set(sentences) <= {u.sentence for u in plain.sets["train_speech"]}
    assert not set(sentences) & {u.sentence for u in plain.all_utts() if u.spk == spk}  # never the same twice
    assert not {u.utt for u in vocoder} & {u.utt for u in plain.all_utts()}  # ids stay unique
    plan = synth_en.make_plan(synth_en.allocate(fake_pool(), inventory, sizes, 5), fake_pool(), inventory, "/w")
    assert sum(p.set == "train_vocoder" for p in plan) == 30


def test_the_vocoder_set_errors_name_the_option(inventory):
    held = next(v.spk for v in inventory if v.heldout)
    for spk, n, match in ((held, 5, "not among the seen voices"), ("nobody", 5, "not among the seen voices"),
                          (next(v.spk for v in inventory if not v.heldout), 61, "--vocoder_utts 61")):
        with pytest.raises(SynthError, match=match):
            synth_en.allocate(fake_pool(), inventory, SetSizes(**{**SIZES.__dict__, "vocoder_utts": n,
                                                                  "vocoder_speaker": spk}), 5)


def test_nested_paired_subsets(inventory):
    alloc = synth_en.allocate(fake_pool(), inventory, SIZES, seed=5)
    utts = [u.utt for u in alloc.sets["train_paired"]]
    subsets = nested_fractions(utts, [1.0, 0.1, 0.02], seed=5)
    assert set(subsets[0.02]) <= set(subsets[0.1]) <= set(subsets[1.0]) == set(utts)
    assert (len(subsets[0.1]), len(subsets[0.02])) == (5, 1)


def test_too_small_a_pool_is_a_clear_error(inventory):
    with pytest.raises(SynthError, match="pool"):
        synth_en.allocate(fake_pool(100), inventory, SIZES, seed=5)
    with pytest.raises(SynthError, match="train_text"):
        synth_en.allocate(fake_pool(150), inventory, SIZES, seed=5)


def test_assign_speakers_is_even():
    inv = voices.voice_inventory(["espeak"])[:4]
    import random
    spks = synth_en.assign_speakers(10, inv, 0.2, random.Random(0))
    counts = sorted(spks.count(v.spk) for v in inv)
    assert counts == [2, 2, 3, 3]


# ------------------------------------------------------------------------------------------------------
# Plan and synthesis
# ------------------------------------------------------------------------------------------------------
def test_plan_round_trips_and_splits_interleaved(tmp_path, inventory):
    pool = fake_pool()
    alloc = synth_en.allocate(pool, inventory, SIZES, seed=5)
    plan = synth_en.make_plan(alloc, pool, inventory, tmp_path / "wav")
    assert len(plan) == 140 and all(p.wav.startswith(str(tmp_path)) for p in plan)
    synth_en.write_plan(tmp_path / "plan.tsv", plan)
    assert synth_en.read_plan(tmp_path / "plan.tsv") == plan
    parts = synth_en.split_plan(plan, 3)
    assert sorted(i.utt for p in parts for i in p) == [i.utt for i in plan]
    assert {len(p) for p in parts} <= {46, 47}
    (tmp_path / "bad.tsv").write_text("only\tthree\tfields\n")
    with pytest.raises(SynthError, match="bad.tsv:1"):
        synth_en.read_plan(tmp_path / "bad.tsv")


def test_trim_silence_keeps_a_fixed_margin():
    fs = synth_en.FS
    speech = (np.sin(np.arange(fs) / 5) * 8000).astype(np.int16)
    padded = np.concatenate([np.zeros(2 * fs, np.int16), speech, np.zeros(3 * fs, np.int16)])
    out = synth_en.trim_silence(padded)
    assert len(out) == len(speech) + int(0.1 * fs) + int(0.15 * fs)
    # speech at the very first sample gets a zero margin in front
    out = synth_en.trim_silence(speech)
    assert len(out) == len(speech) + int(0.25 * fs) and not out[:int(0.1 * fs)].any()


def item(engine: str, voice: str, speed: float, pitch: float, cents: int, wav: str) -> PlanItem:
    return PlanItem("u-0000001", "dev", "u", 1, engine, voice, speed, pitch, cents, wav,
                    "The climate affected their health and spirits.")


@pytest.mark.parametrize("engine, voice, speed, pitch, cents", [
    ("espeak", "en-gb-scotland+f2", 170, 50, 0), ("flite", "slt", 1.0, 170, 0), ("flite", "rms", 1.05, 110, 165)])
def test_synthesize_gives_16k_int16_speech(tmp_path, engine, voice, speed, pitch, cents):
    if shutil.which(synth_en.PROGRAMS[engine]) is None or shutil.which("sox") is None:
        pytest.skip(f"{synth_en.PROGRAMS[engine]} or sox is not installed")
    samples = synth_en.synthesize(item(engine, voice, speed, pitch, cents, str(tmp_path / "x.wav")))
    assert samples.dtype == np.int16 and 1.5 < len(samples) / synth_en.FS < 6
    assert np.sqrt(np.mean((samples / 32768.0) ** 2)) > 0.01  # speech, not silence
    assert np.abs(samples.astype(np.int32)).max() < 32000  # headroom: no clipping
    synth_en.write_wav(tmp_path / "x.wav", samples)
    assert synth_en.wav_is_complete(tmp_path / "x.wav")
    assert not synth_en.wav_is_complete(tmp_path / "missing.wav")


def test_missing_program_is_named(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SynthError, match=r"espeak-ng.*tools/install\.sh"):
        synth_en.check_programs(["espeak"])
