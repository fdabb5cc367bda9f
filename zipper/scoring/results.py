"""A recipe's RESULTS.md, re-derived from its experiment dirs (stage 12; generated, never hand-edited).

Reads what the stages left behind (tower scores.json, fusion config.yaml/scores.json/fused_lm_*.json,
decode dirs with score_wer/ and score_<judge>_{gold,target}/, judge and vocoder experiments with their oracle
scores) and writes: the environment, the commands, tower perplexities, fused models (with what fusion cost each
tower's perplexity), ASR tables in ESPnet's |dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err| form, TTS judge WERs
with the oracle rows, and - when models were trained on several aligned fractions - the data-efficiency table
and its plot (WER vs aligned fraction, images/wer_vs_aligned.png beside RESULTS.md).  Where score.py left
per-utterance counts (per_utt.tsv), the study shows each WER with a bootstrap 95 % interval and marks each
Zipper cell by a Wilcoxon signed-rank test against the baseline at the same fraction (zipper/scoring/significance.py).
Experiment dirs whose names match an exclude pattern (by default `diag_*`, where diagnostics go) are left out.
"""


from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from zipper.scoring.significance import ALPHA, BOOTSTRAP_RESAMPLES, bootstrap_wer_interval, paired_wilcoxon
from zipper.scoring.wer import PER_UTT_FILE, read_per_utt
from zipper.utils.atomic import atomic_path, read_json
from zipper.utils.log import environment

logger = logging.getLogger(__name__)
ASR_COLUMNS = ("Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err")
DEFAULT_EXCLUDE = ("diag_*",)


@dataclasses.dataclass(frozen=True)
class ExpRoot:
    """A recipe's exp/ dir, seen without the experiments whose dir name matches one of `exclude`."""

    path: Path
    exclude: Sequence[str] = DEFAULT_EXCLUDE

    def excludes(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, e) for e in self.exclude)

    def glob(self, pattern: str) -> list[Path]:
        """Sorted matches of `pattern` under the root, outside the excluded experiment dirs."""
        return sorted(p for p in self.path.glob(pattern) if not self.excludes(p.relative_to(self.path).parts[0]))


def read_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def run_info(exp: Path) -> dict[str, str]:
    """When, with what code and on what device an experiment was trained (from its train.log header)."""
    info = {"date": "", "git": "", "device": ""}
    log = exp / "train.log"
    if not log.exists():
        return info
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not info["date"] and re.match(r"\d{4}-\d\d-\d\d", line):
                info["date"] = line[:10]
            if "environment:" in line:
                fields = dict(kv.split("=", 1) for kv in line.split("environment:", 1)[1].split() if "=" in kv)
                info["git"] = fields.get("git", "")
                info["device"] = f"{fields.get('device', '')} ({fields.get('cpus', '?')} CPUs)"
                break
    return info


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["|" + "|".join(header) + "|", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["|" + "|".join(cell(v) for v in row) + "|" for row in rows]
    return "\n".join(lines) + "\n"


def aligned_fraction(config: dict, exp: Path) -> tuple[str, float | None]:
    """(aligned set name, its percentage of the aligned data) of a fusion experiment."""
    name = Path(str(config.get("train_units", ""))).name or exp.name
    match = re.search(r"(\d+(?:\.\d+)?)pct", name)
    return name, float(match.group(1)) if match else None


def system_name(exp: Path, aligned_set: str) -> str:
    """exp/zipper_s_frozen_train_paired_10pct -> zipper_s_frozen (what stays the same across fractions)."""
    name = exp.name
    return name[:-len(aligned_set) - 1] if aligned_set and name.endswith("_" + aligned_set) else name


def fusion_experiments(exp_root: ExpRoot) -> list[dict[str, Any]]:
    out = []
    for config_path in exp_root.glob("*/config.yaml"):
        config = read_yaml(config_path)
        if "model" not in config or not (config_path.parent / ".done").exists():
            continue
        exp = config_path.parent
        aligned, pct = aligned_fraction(config, exp)
        freeze = (config.get("model_conf") or {}).get("freeze", [])
        asr, tts = decode_scores(exp)
        fused_lm = {m: read_json(exp / f"fused_lm_{m}.json") for m in ("text", "speech")
                    if (exp / f"fused_lm_{m}.json").exists()}  # each tower's ppl before/after fusion (stage 12)
        out.append({"exp": exp, "config": config, "aligned_set": aligned, "pct": pct, "fused_lm": fused_lm,
                    "system": system_name(exp, aligned), "model": config["model"],
                    "frozen": ", ".join(freeze) if config["model"] == "zipper" else "-",
                    "scores": read_json(exp / "scores.json") if (exp / "scores.json").exists() else {},
                    "asr": asr, "tts": tts})
    return out


def decode_scores(exp: Path) -> tuple[list[dict], list[dict]]:
    """(ASR score.json dicts, TTS gold score.json dicts) of every scored decode dir of an experiment."""
    asr, tts = [], []
    for score in sorted(exp.glob("decode_*/*/score_wer/score.json")):
        asr.append({**read_json(score), "decode_dir": score.parent.parent})
    for score in sorted(exp.glob("decode_*/*/score_*_gold/score.json")):
        tts.append({**read_json(score), "decode_dir": score.parent.parent})
    return asr, tts


def section_environment(env: dict[str, str]) -> str:
    device = env.get("device", "cpu")
    device = f"{cpu_name()}, {env.get('cpus')} CPUs" if device == "cpu" else device
    lines = [f"- date: {datetime.date.today().isoformat()} (this file); each experiment's training date is below",
             f"- python {env.get('python')}, torch {env.get('torch')}, git {env.get('git')}",
             f"- device: {device}", f"- platform: {env.get('platform')}"]
    return "## Environment\n" + "\n".join(lines) + "\n"


COMMANDS_LOG = "commands.log"  # zipper.sh appends each invocation (with its start time) to <exp_root>/commands.log


def history_of_runs(history: Path) -> str:
    """zipper.sh's invocations, oldest first: the options they share (run.sh's) once, then what each run added."""
    runs = [line.rsplit("  # ", 1) if "  # " in line else [line, "-"]
            for line in history.read_text(encoding="utf-8").splitlines() if line.strip()]
    commands = [c.rstrip() for c, _ in runs]
    shared = os.path.commonprefix(commands)
    while shared and not all(c == shared or c[len(shared):].startswith(" --") for c in commands):
        shared = shared[:max(shared.rfind(" --"), 0)]  # cut back to whole options
    dates = [d for _, d in runs]
    if len(runs) < 2 or not shared:
        return (f"Produced by these runs (`{history}`, oldest first):\n```sh\n"
                + "\n".join(f"{c}  # {d}" for c, d in zip(commands, dates)) + "\n```\n")
    added = [c[len(shared):].strip() for c in commands]
    rows = [(d, f"`{a}`" if a else "(none)") for d, a in zip(dates, added)]
    return (f"Produced by {len(runs)} runs (`{history}` has each in full), all of\n```sh\n{shared}\n```\n"
            "with these options added, oldest first:\n\n" + table(("started", "added options"), rows))


def section_commands(exp_root: Path, command: str, exps: list[Path]) -> str:
    out = "## Commands\n"
    history = exp_root / COMMANDS_LOG
    if history.exists():  # every zipper.sh run over this exp dir: one invocation alone rarely made it all
        out += history_of_runs(history)
    elif command:
        out += f"Produced by:\n```sh\n{command}\n```\n"
    rows = []
    for exp in exps:
        info = run_info(exp)
        rows.append((f"`{exp}`", f"`bash {exp}/run.sh`" if (exp / "run.sh").exists() else "-", info["date"],
                     info["device"], info["git"]))
    if rows:
        out += "\nEvery experiment keeps its resolved config.yaml and a replay script:\n\n"
        out += table(("experiment", "replay", "trained", "device", "git"), rows)
    return out


def section_towers(exp_root: ExpRoot) -> tuple[str, list[Path]]:
    rows, exps = [], []
    for scores_path in exp_root.glob("tower_*/scores.json"):
        exp = scores_path.parent
        s = read_json(scores_path)
        config = read_yaml(exp / "config.yaml")
        rows.append((f"`{exp.name}`", config.get("modality", "?"), s.get("valid_data", ""), s["valid_ppl"],
                     s["unigram_ppl"], int(s["uniform_ppl"]), s.get("train_tokens", "")))
        exps.append(exp)
    if not rows:
        return "", exps
    return ("## Towers (stages 7-8): dev perplexity\n"
            + table(("tower", "modality", "dev data", "ppl", "unigram ppl", "vocabulary", "train tokens"), rows),
            exps)


def fusion_plots(fusion: list[dict], out_dir: Path) -> str:
    """Each fused model's gain-and-gates plot at the largest aligned fraction, copied beside RESULTS.md (exp/ is
    not committed) as images/fusion_<exp>.png, and its Markdown."""
    largest = max((f["pct"] for f in fusion if f["pct"] is not None), default=None)
    out = []
    for f in fusion:
        plot = f["exp"] / "images" / "fusion.png"
        if f["pct"] == largest and plot.exists():
            copy = out_dir / "images" / f"fusion_{f['exp'].name}.png"
            copy.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(copy, suffix=".png") as tmp:
                shutil.copyfile(plot, tmp)
            out.append(f"![`{f['exp'].name}`: audio gain and gates against updates]"
                       f"({copy.relative_to(out_dir)})")
    return ("\nAudio gain and the tanh of every gate against updates:\n\n" + "\n".join(out) + "\n") if out else ""


def section_fusion(fusion: list[dict], out_dir: Path) -> str:
    if not fusion:
        return ""
    rows = []
    for f in fusion:
        valid = f["scores"].get("valid", {})
        costs = []
        for modality in ("text", "speech"):
            s = f["fused_lm"].get(modality)
            costs.append(f"{s['tower_ppl']:.2f} -> {s['ppl']:.2f}" if s else "-")
        rows.append((f"`{f['exp'].name}`", f["model"], f["aligned_set"], f["frozen"], valid.get("loss", "-"),
                     valid.get("asr_loss", "-"), valid.get("tts_loss", "-"), valid.get("asr_gain", "-"),
                     valid.get("tts_gain", "-"), *costs))
    return ("## Fused models (stage 9)\nValidation losses (nats/token); the audio gain of each task: the loss with "
            "the conditioning side of every pair swapped for another utterance's minus the loss on the true pairs "
            "(~0: the model ignores the other modality; curves and gates in the experiment's `images/fusion.png`); "
            "and each tower's dev perplexity before -> after fusion, on its own modality alone (what fusion cost "
            "the tower).\n\n"
            + table(("model", "kind", "aligned set", "frozen", "valid loss", "ASR loss", "TTS loss", "ASR gain",
                     "TTS gain", "text ppl", "speech ppl"), rows) + fusion_plots(fusion, out_dir))


def section_asr(fusion: list[dict]) -> str:
    blocks = []
    for f in fusion:
        asr = f["asr"]
        if asr:
            rows = [(f"`{s['decode_dir'].parent.name}/{s['set']}`", *(s[c] for c in ASR_COLUMNS)) for s in asr]
            blocks.append(f"### `{f['exp']}`\n" + table(("dataset", *ASR_COLUMNS), rows))
    if not blocks:
        return ""
    return "## ASR (WER %, stage 12)\n" + "\n".join(blocks)


def judge_label(decode_dir: Path, judge: str) -> str:
    return {"unit": "unit CTC judge"}.get(judge, judge)


def section_tts(fusion: list[dict], exp_root: ExpRoot) -> str:
    rows = []
    for f in fusion:
        for s in f["tts"]:
            best = s.get("wer_gold_best_of_n")
            rows.append((f"`{f['exp'].name}`", f["frozen"], s["set"], judge_label(s["decode_dir"], s["judge"]),
                         s["wer_gold"], s.get("cer_gold", "-"), s["wer_target"], best if best is not None else "-"))
    oracle_rows = []
    for score in exp_root.glob("judge_*/gold_*/score_wer/score.json"):
        s = read_json(score)
        oracle_rows.append((f"Oracle (gold units, `{score.parents[2].name}`)", "-", s["set"], "unit CTC judge",
                            s["wer"], s.get("cer", "-"), "-", "-"))
    # stage 11: Whisper on the original recordings, on vocoded gold units (the oracle) and on vocoded decodings
    for judged in exp_root.glob("judge_whisper_*/recordings_*/judge.json"):
        s = read_json(judged)
        oracle_rows.append(("Original recordings", "-", judged.parent.name[len("recordings_"):],
                            f"Whisper {s['model']}", s["wer"], "-", "-", "-"))
    for judged in exp_root.glob("vocoder_*/resynth_*/judge_whisper_*/judge.json"):
        s = read_json(judged)
        oracle_rows.append((f"Oracle (gold units vocoded by `{judged.parents[2].name}`)", "-",
                            judged.parents[1].name[len("resynth_"):], f"Whisper {s['model']}", s["wer"], "-", "-",
                            "-"))
    for f in fusion:
        # <decode dir>/vocoded_<vocoder tag>/judge_whisper_*; before 2026-12-03, <decode dir>/judge_whisper_*
        for judged in [*sorted(f["exp"].glob("decode_tts_*/*/vocoded_*/judge_whisper_*/judge.json")),
                       *sorted(f["exp"].glob("decode_tts_*/*/judge_whisper_*/judge.json"))]:
            s, audio_dir = read_json(judged), judged.parents[1]
            vocoder = f"vocoder_{audio_dir.name[len('vocoded_'):]}" if audio_dir.name.startswith("vocoded_") else ""
            if vocoder and exp_root.excludes(vocoder):  # audio of a vocoder left out is left out with it
                continue
            by = f" by `{vocoder}`" if vocoder else ""
            rows.append((f"`{f['exp'].name}` (vocoded{by})", f["frozen"], (audio_dir.parent if by else audio_dir).name,
                         f"Whisper {s['model']}", s["wer"], "-", s.get("wer_target", "-"), "-"))
    if not rows and not oracle_rows:
        return ""
    return ("## TTS (judge WER %, stage 12)\n\"WER gold\" (\"CER gold\"): the judge's transcript of the generated "
            "units against the input text, in words (characters); \"WER target\": against the judge's transcript of "
            "the gold units (as in the paper).  Whisper (stage 11) judges vocoded audio: its oracle is the vocoded "
            "gold units, beside the original recordings, and its WER target is against its transcript of the vocoded "
            "gold units.\n\n"
            + table(("model", "frozen", "set", "judge", "WER gold", "CER gold", "WER target", "best of N (gold)"),
                    oracle_rows + rows))


@dataclasses.dataclass
class StudyCell:
    """One system at one aligned fraction on one set: its WER, with what the per-utterance scores add."""

    wer: float
    model: str  # "zipper" or "vocab_expansion" (the baseline)
    per_utt: dict[str, tuple[int, int]] | None = None  # utt -> (reference words, errors), from per_utt.tsv
    interval: tuple[float, float] | None = None  # bootstrap 95 % interval of the WER
    mark: str = ""  # significance against the baseline at the same fraction: "*↓", "*↑", "n.s." or ""

    def text(self) -> str:
        out = f"{self.wer:.2f}"
        if self.interval is not None:
            out += f" [{self.interval[0]:.2f}, {self.interval[1]:.2f}]"
        return out + (f" {self.mark}" if self.mark else "")


BASELINE_MODEL = "vocab_expansion"
StudyPoints = dict[tuple[str, str, str], dict[float, StudyCell]]  # (task, set, system) -> pct -> cell


def study_cell(wer: float, model: str, score_dir: Path) -> StudyCell:
    """A cell, with its bootstrap interval when score.py left per-utterance counts in score_dir."""
    path = score_dir / PER_UTT_FILE
    if not path.exists():  # scored before per_utt.tsv existed: the WER alone
        return StudyCell(wer, model)
    per_utt = read_per_utt(path)
    words, errors = zip(*per_utt.values())
    return StudyCell(wer, model, per_utt, bootstrap_wer_interval(errors, words))


def mark_significance(points: StudyPoints) -> dict[tuple[str, str], str]:
    """Mark each Zipper cell against the baseline system's cell at the same task, set and fraction (Wilcoxon
    signed-rank on the per-utterance WERs of the utterances both scored); return (task, set) -> baseline."""
    baselines: dict[tuple[str, str], str] = {}
    for (task, s, system), cells in sorted(points.items()):
        if any(c.model == BASELINE_MODEL for c in cells.values()):
            baselines.setdefault((task, s), system)  # with several baselines, the first by name
    for (task, s, system), cells in points.items():
        baseline = baselines.get((task, s))
        if baseline is None or baseline == system:
            continue
        for pct, cell in cells.items():
            other = points[(task, s, baseline)].get(pct)
            if cell.model == BASELINE_MODEL or other is None or cell.per_utt is None or other.per_utt is None:
                continue
            utts = sorted(set(cell.per_utt) & set(other.per_utt))
            if len(utts) < len(cell.per_utt) or len(utts) < len(other.per_utt):
                logger.warning("%s %s %g%%: %s and %s were scored on different utterances; comparing the %d both "
                               "have", task, s, pct, system, baseline, len(utts))
            if not utts:
                continue
            _, p, direction = paired_wilcoxon([cell.per_utt[u][1] / cell.per_utt[u][0] for u in utts],
                                              [other.per_utt[u][1] / other.per_utt[u][0] for u in utts])
            cell.mark = ("*" + ("↓" if direction < 0 else "↑")) if p < ALPHA and direction else "n.s."
    return baselines


def section_study(fusion: list[dict], test_sets: Sequence[str] | None, out_dir: Path) -> str:
    """Systems trained on several aligned fractions: table and plot of WER against the fraction, each WER with
    its bootstrap interval and each Zipper cell marked by its significance against the baseline."""
    # (task, set, search: its decode dir's name, experiment, WER, where its per-utterance scores are)
    scored = [(task, s["set"], s["decode_dir"].parent.name, f, s[wer], s["decode_dir"] / score)
              for f in fusion if f["pct"] is not None
              for task, key, score, wer in (("ASR", "asr", "score_wer", "wer"),
                                            ("TTS", "tts", "score_unit_gold", "wer_gold"))
              for s in f[key] if task == "ASR" or s["judge"] == "unit"]
    # an experiment decoded with several search settings: each its own row, named by its decode dir, so that one
    # does not silently stand for another and each is compared with the baseline decoded the same way
    searches = {task: {search for t, _, search, *_ in scored if t == task} for task in ("ASR", "TTS")}
    sets = sorted({name for _, name, *_ in scored})
    wanted = list(test_sets) if test_sets else [s for s in sets if s != "dev"] or sets
    points: StudyPoints = {}
    for task, name, search, f, wer, score in scored:
        if name in wanted:
            label = name if len(searches[task]) < 2 else f"{name}, {search}"
            points.setdefault((task, label, f["system"]), {})[f["pct"]] = study_cell(wer, f["model"], score)
    fractions = sorted({p for v in points.values() for p in v})
    if not fractions or len(points) < 2:  # one fraction still gets its intervals and significance, not a plot
        return ""
    plotted = len(fractions) > 1
    baselines = mark_significance(points)
    rows = [(task, s, f"`{system}`", *(v[p].text() if p in v else "-" for p in fractions)) for (task, s, system), v
            in sorted(points.items())]
    ppl = fusion_perplexities(fusion)
    legend = ""
    if any(c.interval is not None for v in points.values() for c in v.values()):
        legend += (f"Each WER with its {100 * (1 - ALPHA):g} % bootstrap interval ({BOOTSTRAP_RESAMPLES} resamples "
                   "of the utterances, seeded).  ")
    if any(c.mark for v in points.values() for c in v.values()):
        named = ", ".join(sorted({f"`{b}`" for b in baselines.values()}))
        legend += (f"`*↓` / `*↑`: WER significantly lower / higher than the single-decoder baseline ({named}) at "
                   f"the same fraction (Wilcoxon signed-rank test on per-utterance WER of the same utterances, "
                   f"p < {ALPHA:g}); `n.s.`: no significant difference.")
    image = out_dir / "images" / "wer_vs_aligned.png"
    if plotted:
        plot_study(points, image, ppl)
    ppl_rows = [(modality, f"`{system}`", f"{curve.tower:.2f}", *(f"{curve.fused[p]:.2f}" if p in curve.fused else "-"
                                                                for p in fractions))
                for (modality, system), curve in sorted(ppl.items())]
    ppl_header = ("modality", "system", "tower", *(f"{p:g}%" for p in fractions))
    ppl_table = ("\nWhat fusion cost each tower: its dev perplexity on its own modality alone, pre-trained and after "
                 "fusion on each fraction (`fused_lm_*.json`).\n\n" + table(ppl_header, ppl_rows)) if ppl_rows else ""
    title = "Data-efficiency study: WER % vs aligned data" if plotted else "WER %, intervals, significance"
    return (f"## {title}\nASR: WER; TTS: unit-judge WER gold.  Columns: % of the aligned training set."
            + (f"  {legend.strip()}" if legend else "") + "\n\n"
            + table(("task", "set", "system", *(f"{p:g}%" for p in fractions)), rows) + ppl_table
            + (f"\n![WER vs aligned fraction]({image.relative_to(out_dir)})\n" if plotted else ""))


@dataclasses.dataclass
class PerplexityCurve:
    """A fused system's perplexity on one modality alone: its pre-trained tower's, and after fusion per fraction."""

    tower: float
    fused: dict[float, float] = dataclasses.field(default_factory=dict)


def fusion_perplexities(fusion: list[dict]) -> dict[tuple[str, str], PerplexityCurve]:
    """(modality, system) -> its perplexity curve, from the fused_lm_<modality>.json of each fraction's experiment."""
    out: dict[tuple[str, str], PerplexityCurve] = {}
    for f in fusion:
        for modality, s in f["fused_lm"].items():
            if f["pct"] is not None:
                out.setdefault((modality, f["system"]), PerplexityCurve(s["tower_ppl"])).fused[f["pct"]] = s["ppl"]
    return out


def style_fraction_axis(ax, ylabel: str, title: str) -> None:
    """A panel against the aligned fraction: log x, labels, grid, legend."""
    ax.set_xscale("log")
    ax.set_xlabel("aligned data (%)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def plot_study(points: StudyPoints, image: Path,
               ppl: dict[tuple[str, str], PerplexityCurve] | None = None) -> None:
    """WER against the aligned fraction (log x), one panel per task and set side by side, one line per system,
    with the bootstrap intervals as error bars where there are any; then one panel per modality of the fused
    systems' perplexity on it alone, the pre-trained tower's as a dashed line (what fusion cost)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(task, s) for task, s, _ in points})
    modalities = sorted({m for m, _ in ppl or {}})
    systems = sorted({system for _, _, system in points} | {system for _, system in ppl or {}})
    color = {system: f"C{i % 10}" for i, system in enumerate(systems)}  # one colour per system in every panel
    fig, axes = plt.subplots(1, len(panels) + len(modalities), figsize=(5 * (len(panels) + len(modalities)), 4),
                             squeeze=False)
    for ax, modality in zip(axes[0][len(panels):], modalities):
        for (m, system), curve in sorted((ppl or {}).items()):
            if m != modality:
                continue
            xs = sorted(curve.fused)
            ax.plot(xs, [curve.fused[x] for x in xs], marker="o", label=system, color=color[system])
            ax.axhline(curve.tower, color=color[system], linestyle="--", linewidth=1)
        style_fraction_axis(ax, "dev perplexity", f"{modality} alone (dashed: pre-trained tower)")
    for ax, (task, s) in zip(axes[0], panels):
        for (t, s2, system), curve in sorted(points.items()):
            if (t, s2) != (task, s):
                continue
            xs = sorted(curve)
            ys = [curve[x].wer for x in xs]
            below = [y - curve[x].interval[0] if curve[x].interval else 0.0 for x, y in zip(xs, ys)]
            above = [curve[x].interval[1] - y if curve[x].interval else 0.0 for x, y in zip(xs, ys)]
            ax.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, label=system, color=color[system])
        style_fraction_axis(ax, "WER (%)", f"{task} on {s}")
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(image, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def render(exp_root: str | Path, output: str | Path, title: str = "", command: str = "",
           test_sets: Sequence[str] | None = None, exclude: Sequence[str] = DEFAULT_EXCLUDE) -> str:
    """The text of RESULTS.md for `exp_root` (`output` only places the plots beside it)."""
    root = ExpRoot(Path(exp_root), tuple(exclude))
    if not root.path.is_dir():
        raise FileNotFoundError(f"{root.path} does not exist: run the recipe's stages first")
    out_dir = Path(output).resolve().parent
    title = title or "/".join(Path.cwd().parts[-2:])
    fusion = fusion_experiments(root)
    towers, tower_exps = section_towers(root)
    judges = [p.parent for p in root.glob("judge_*/scores.json")]
    vocoders = [p.parent for p in root.glob("vocoder_*/vocoder.json")]
    parts = [f"<!-- Generated by `python -m zipper.bin.show_results`; do not edit by hand. -->\n# RESULTS: {title}\n",
             section_environment(environment()),
             section_commands(root.path, command, tower_exps + [f["exp"] for f in fusion] + judges + vocoders),
             towers, section_fusion(fusion, out_dir), section_asr(fusion), section_tts(fusion, root),
             section_study(fusion, test_sets, out_dir)]
    for judge in judges:
        s = read_json(judge / "scores.json")
        parts.append(f"Unit judge `{judge}`: CTC over units, trained on {s['train_utterances']} utterances; "
                     f"on the gold units of `{s['valid_units']}`: WER {s['valid_wer']:.2f} %, "
                     f"CER {s['valid_cer']:.2f} %.\n")
    return "\n".join(p for p in parts if p)
