"""Stage 12: score one decoding directory (stage 10) against the set's transcripts.

ASR (`text` in the decode dir): word error rate after normalisation, in <decode_dir>/score_wer/
(result.txt, errs-<set>.txt, recogs-<set>.txt, wer-summary-<set>.txt, per_utt.tsv, score.json).

TTS (`units.scp`): a judge transcribes what was generated and is scored two ways, as in the paper:
  * "WER gold": against the transcript the units were generated from;
  * "WER target": against the judge's own transcript of the set's gold units (what the judge can recover at
    best from real speech), so that judge errors common to both are not charged to the TTS model.
With several samples per utterance (`nbest/units.<k>.scp`) the best of them per utterance is scored too
(the paper reports best of 3).  The judge's transcripts of the gold units, and their WER against the
transcripts (the oracle row: the ceiling), are kept in the judge's experiment dir, once per set.
Results go to <decode_dir>/score_<judge>_gold/ and score_<judge>_target/ (with judge transcripts in
<decode_dir>/judge_<judge>/).  The `unit` judge is zipper.bin.judge_train's CTC recogniser over units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from zipper.scoring.decodings import score_decode_dir
from zipper.scoring.wer import Normalizer
from zipper.utils.cli import make_parser, parse_and_setup, run_main, yaml_value
from zipper.utils.provenance import ProvenanceError


def get_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--decode_dir", required=True, help="a stage-10 decode dir (with decode.json)")
    parser.add_argument("--data_dir", default="", help="data dir of the set (default: decode.json's data_dir)")
    parser.add_argument("--gold_units_dir", default="", help="TTS: units of the set (default: decode.json's units_dir)")
    parser.add_argument("--judge_exp", default="", help="TTS: a zipper.bin.judge_train experiment dir")
    parser.add_argument("--normalizer", type=yaml_value, default={},
                        help="YAML dict of zipper.scoring.wer.Normalizer fields (default: lower-case, no punctuation)")
    parser.add_argument("--device", default="cpu", help="torch device of the judge")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_and_setup(get_parser(), argv)
    decode_dir = Path(args.decode_dir)
    summary = score_decode_dir(decode_dir, args.data_dir, args.gold_units_dir, args.judge_exp,
                               Normalizer(**(args.normalizer or {})), args.device)
    if summary["task"] == "asr":
        print(f"{decode_dir}: WER {summary['wer']:.2f} % ({summary['Snt']} utterances, {summary['Wrd']} words)")
    else:
        print(f"{decode_dir}: unit judge WER gold {summary['wer_gold']:.2f} %, WER target "
              f"{summary['wer_target']:.2f} % (gold units: {summary['oracle_wer']:.2f} %)")
    return summary


if __name__ == "__main__":
    run_main(main, expected_errors=(ProvenanceError, FileNotFoundError, ValueError, KeyError))
