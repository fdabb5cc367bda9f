"""Where every file of a trained model is, and packing them into one zip that runs anywhere.

A model is a fusion experiment (stage 9: config.yaml + checkpoint) and what it needs around it: the towers'
experiments (config.yaml + weights; a frozen tower's weights are only there), both token lists with the
sentencepiece model, the k-means dir of its speech units (centroids + provenance, which names the feature
upstream and its config), a vocoder (stage 11) and the decode config of stage 10.  `experiment_files` finds
them from an experiment dir; `pack` zips them with a manifest (provenance, sha256 of every member, which
config keys are paths); `open_model` gives the same `ModelFiles` for an experiment dir, a packed zip or an
unzipped one, checking every checksum first and naming the member that does not match.

Layout of a packed model (paths inside configs are relative to its root and resolved when it is opened):
    manifest.json  decode.yaml  model/{config.yaml,model.pth}  towers/{text,speech}/{config.yaml,model.pth}
    token_list/{text,speech}/{tokens.txt,provenance.json[,sentencepiece.model]}  kmeans/{centroids.npy,
    provenance.json}  vocoder/{config.yaml,vocoder.json,model.pth}
Each weight is packed once: a Zipper checkpoint is split into its fusion weights (model/model.pth) and the
towers it trained (towers/<m>/model.pth, in place of the pre-trained file); a frozen tower is its experiment's file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml

from zipper.tokens.kmeans import CENTROIDS_FILE, POSITION_FILE, UNIT_ENCODER_DIR
from zipper.tokens.text_tokenizer import MODEL_FILE as SPM_FILE
from zipper.tokens.token_list import TOKENS_FILE
from zipper.tokens.units import INVENTORY_KEYS
from zipper.utils.atomic import atomic_path, read_json
from zipper.utils.provenance import PROVENANCE_FILE, ProvenanceError, check_provenance, read_provenance

logger = logging.getLogger(__name__)
FORMAT = "zipper-model/1"
MANIFEST = "manifest.json"
DECODE_FILE = "decode.yaml"
LEXICON_FILE = "lexicon.txt"  # the words the text search may spell (decode config's text.lexicon), if any
CHECKPOINT = "valid.loss.ave.pth"
PACKED_WEIGHTS = "model.pth"
VOCODER_FILES = ("config.yaml", "vocoder.json")


class PackError(RuntimeError):
    """A packed model is incomplete, damaged or altered."""


@dataclasses.dataclass
class ModelFiles:
    """Paths of one model's parts (an experiment's own, or those of an opened packed model)."""

    fusion_dir: Path  # config.yaml + checkpoint
    checkpoint: str
    kmeans_dir: Optional[Path]  # None: no k-means found (a TTS-only use needs none)
    vocoder_dir: Optional[Path]
    vocoder_checkpoint: str
    decode_config: dict[str, Any]  # search settings per modality (text, speech)
    source: str  # what the user named, for messages
    manifest: Optional[dict[str, Any]] = None  # a packed model's
    towers_in_tower_files: bool = False  # packed Zipper: the fusion file leaves the towers to their own files
    upstream_ckpt: Optional[Path] = None  # a packed model's copy of the feature upstream's `ckpt` (file or dir)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


# ------------------------------------------------------------------------------------------ experiment dirs
def stage10_decode_config(exp_dir: Path) -> Optional[dict[str, Any]]:
    """The search settings stage 10 decoded this experiment with (its decode.json files), if they agree."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(exp_dir.glob("decode_*/*/decode.json")):
        found[str(path)] = read_json(path).get("search") or {}
    distinct = {yaml.safe_dump(s, sort_keys=True) for s in found.values()}
    if len(distinct) > 1:
        raise ValueError(f"stage 10 decoded {exp_dir} with several decode configs ({', '.join(found)}): "
                         "say which with decode_config= / --decode_config")
    return next(iter(found.values())) if found else None


def find_kmeans_dir(exp_dir: Path, speech_provenance: dict[str, Any]) -> Optional[Path]:
    """exp/kmeans/<kmeans_tag> next to the experiment (stage 4's place), when it exists."""
    tag = speech_provenance.get("kmeans_tag")
    candidate = exp_dir.resolve().parent / "kmeans" / str(tag)
    return candidate if tag and (candidate / CENTROIDS_FILE).exists() else None


def find_vocoder_dir(exp_dir: Path, speech_provenance: dict[str, Any]) -> Optional[Path]:
    """The one finished exp/vocoder_* next to the experiment trained on the model's unit inventory."""
    matching = []
    for info in sorted(exp_dir.resolve().parent.glob("vocoder_*/vocoder.json")):
        inventory = read_json(info).get("inventory", {})
        if all(inventory.get(k) == speech_provenance.get(k) for k in INVENTORY_KEYS) and \
                (info.parent / ".done").exists():
            matching.append(info.parent)
    if len(matching) > 1:
        raise ValueError(f"several vocoders fit {exp_dir}: {', '.join(map(str, matching))}; say which with "
                         "vocoder_dir= / --vocoder_dir")
    return matching[0] if matching else None


def experiment_files(exp_dir: str | os.PathLike, checkpoint: str = CHECKPOINT, kmeans_dir: str | None = None,
                     vocoder_dir: str | None = None, vocoder_checkpoint: str = "vocoder.pth",
                     decode_config: dict[str, Any] | None = None) -> ModelFiles:
    """The parts of a fusion experiment: given ones, else found next to it (exp/kmeans/, exp/vocoder_*/)."""
    from zipper.tokens.token_list import TokenList

    exp = Path(exp_dir)
    config = read_yaml(exp / "config.yaml")
    if "model" not in config:
        raise ValueError(f"{exp} is not a fusion experiment (stage 9): its config.yaml has no 'model'")
    if not (exp / checkpoint).exists():
        raise FileNotFoundError(f"{exp / checkpoint} is missing: has {exp} finished training?")
    speech = TokenList(config["speech_token_list"]).provenance
    km = Path(kmeans_dir) if kmeans_dir else find_kmeans_dir(exp, speech)
    vocoder = Path(vocoder_dir) if vocoder_dir else find_vocoder_dir(exp, speech)
    settings = decode_config if decode_config is not None else stage10_decode_config(exp)
    return ModelFiles(exp, checkpoint, km, vocoder, vocoder_checkpoint, with_lexicon_found(settings or {}, exp),
                      str(exp))


def with_lexicon_found(settings: dict[str, Any], exp: Path) -> dict[str, Any]:
    """The text search's lexicon as a path that opens from anywhere: stage 10 names it from the recipe dir."""
    lexicon = (settings.get("text") or {}).get("lexicon")
    if not lexicon or Path(lexicon).is_absolute():
        return settings
    for candidate in (Path(lexicon), exp.resolve().parent.parent / lexicon):  # the recipe dir holds exp/<name>
        if candidate.exists():
            return {**settings, "text": {**settings["text"], "lexicon": str(candidate.resolve())}}
    raise FileNotFoundError(f"the text search's lexicon {lexicon} of {exp} is missing (looked here and in the "
                            f"recipe dir {exp.resolve().parent.parent})")


# ---------------------------------------------------------------------------------------------------- packing
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_hash() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


class _Packer:
    """Collects (member, source file) pairs and rewritten configs, then writes the zip."""

    def __init__(self):
        self.files: dict[str, Path] = {}
        self.texts: dict[str, str] = {}
        self.paths: dict[str, list[str]] = {}  # config member -> keys whose values are pack-relative paths

    def add_file(self, member: str, source: Path) -> None:
        if not source.is_file():
            raise FileNotFoundError(f"{source} is missing: cannot pack it as {member}")
        self.files[member] = source

    def add_tree(self, member: str, source: Path) -> None:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                self.add_file(f"{member}/{path.relative_to(source).as_posix()}", path)

    def add_config(self, member: str, config: dict[str, Any], path_keys: dict[str, str]) -> None:
        """config.yaml with `path_keys` (key -> pack-relative dir) replacing the experiment's paths."""
        config = dict(config, **path_keys)
        self.texts[member] = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        self.paths[member] = sorted(path_keys)

    def add_token_list(self, member: str, source: Path) -> None:
        for name in (TOKENS_FILE, PROVENANCE_FILE, SPM_FILE):
            if (source / name).exists():
                self.add_file(f"{member}/{name}", source / name)

    def write(self, output: Path, manifest: dict[str, Any]) -> None:
        checksums: dict[str, str] = {}
        for member, text in self.texts.items():
            checksums[member] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        for member, source in self.files.items():
            checksums[member] = sha256_file(source)
        manifest = dict(manifest, files=dict(sorted(checksums.items())), paths=self.paths)
        import json

        with atomic_path(output, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            for member, text in sorted(self.texts.items()):
                z.writestr(member, text)
            for member, source in sorted(self.files.items()):
                z.write(source, member)


def pack_tower(packer: _Packer, modality: str, tower_exp: str, tower_checkpoint: str,
               weights: Optional[Path] = None) -> None:
    """A tower experiment's config and weights (`weights`: the fused model's, for a tower fusion trained), and an
    imported Hugging Face tower's local model dir."""
    exp = Path(tower_exp)
    config = read_yaml(exp / "config.yaml")
    member = f"towers/{modality}"
    paths = {"token_list": f"token_list/{modality}"} if config.get("token_list") else {}
    if config.get("tower") == "hf":
        hf = Path(config.get("hf_model", ""))
        if not hf.is_dir():
            raise ValueError(f"the {modality} tower {exp} is the Hugging Face model {config.get('hf_model')!r}, "
                             "not a local dir: save it with save_pretrained and point hf_model at it to pack it")
        packer.add_tree(f"{member}/hf", hf)
        paths = {"hf_model": f"{member}/hf"}
    if weights is not None:
        packer.add_file(f"{member}/{PACKED_WEIGHTS}", weights)
    elif (exp / tower_checkpoint).exists():
        packer.add_file(f"{member}/{PACKED_WEIGHTS}", exp / tower_checkpoint)
    elif config.get("tower") != "hf":
        raise FileNotFoundError(f"{exp / tower_checkpoint} is missing: has the {modality} tower finished training?")
    packer.add_config(f"{member}/config.yaml", config, paths)
    if config.get("token_list"):
        packer.add_token_list(f"token_list/{modality}", Path(config["token_list"]))


def split_fused_weights(checkpoint: Path, tmp: Path) -> tuple[Path, dict[str, Path]]:
    """A Zipper checkpoint -> (its fusion weights, {modality: the weights of each tower it trained}) as files.

    A tower fusion trained is in the fused checkpoint; one it froze is not (its experiment's file is packed).
    Each tower's weights are stored once: in its tower file, which `load_fused(..., towers_in_tower_files=True)`
    loads first."""
    import torch

    state = torch.load(checkpoint, map_location="cpu")
    towers: dict[str, Path] = {}
    for modality in sorted({k.split(".")[1] for k in state if k.startswith("towers.")}):
        prefix = f"towers.{modality}."
        towers[modality] = tmp / f"tower_{modality}.pth"
        torch.save({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, towers[modality])
    fusion = tmp / "fusion.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("towers.")}, fusion)
    return fusion, towers


def pack(files: ModelFiles, output: str | os.PathLike, require_vocoder: bool = False) -> dict[str, Any]:
    """Write the model `files` describes to the zip `output`; returns its manifest (without the checksums)."""
    with tempfile.TemporaryDirectory(prefix="zipper_pack_") as tmp:
        return _pack(files, Path(output), require_vocoder, Path(tmp))


def _pack(files: ModelFiles, output: Path, require_vocoder: bool, tmp: Path) -> dict[str, Any]:
    from zipper.tokens.token_list import TokenList

    config = read_yaml(files.fusion_dir / "config.yaml")
    speech = TokenList(config["speech_token_list"])
    packer = _Packer()
    split = config.get("model") == "zipper"  # the baseline's tower has an expanded vocabulary: not a tower file
    if split:
        fusion, trained = split_fused_weights(files.fusion_dir / files.checkpoint, tmp)
    else:
        fusion, trained = files.fusion_dir / files.checkpoint, {}
    packer.add_file(f"model/{PACKED_WEIGHTS}", fusion)
    fusion_paths = {"text_tower_exp": "towers/text", "speech_token_list": "token_list/speech",
                    "tower_checkpoint": PACKED_WEIGHTS}
    tower_checkpoint = config.get("tower_checkpoint", CHECKPOINT)
    pack_tower(packer, "text", config["text_tower_exp"], tower_checkpoint, trained.get("text"))
    if config.get("speech_tower_exp"):
        fusion_paths["speech_tower_exp"] = "towers/speech"
        pack_tower(packer, "speech", config["speech_tower_exp"], tower_checkpoint, trained.get("speech"))
    packer.add_token_list("token_list/speech", Path(config["speech_token_list"]))
    packer.add_config("model/config.yaml", config, fusion_paths)
    packer.paths["model/config.yaml"] = sorted(k for k in fusion_paths if k != "tower_checkpoint")
    manifest: dict[str, Any] = {
        "format": FORMAT, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_hash(), "source": {"exp_dir": str(files.fusion_dir.resolve()), "checkpoint": files.checkpoint},
        "model": config.get("model"), "speech_tokens": speech.provenance,
        "towers_in_tower_files": split, "trained_towers": sorted(trained),
    }
    if files.kmeans_dir is None:
        raise FileNotFoundError(f"no k-means dir for {files.fusion_dir} (expected exp/kmeans/"
                                f"{speech.provenance.get('kmeans_tag')}): pass --kmeans_dir")
    km = read_provenance(files.kmeans_dir)
    check_provenance(km, speech.provenance, INVENTORY_KEYS,
                     f"k-means {files.kmeans_dir} vs the speech tokens of {files.fusion_dir}")
    packer.add_file(f"kmeans/{CENTROIDS_FILE}", files.kmeans_dir / CENTROIDS_FILE)
    if km.get("remove_position"):  # the position map is subtracted before assignment (zipper/tokens/kmeans.py)
        packer.add_file(f"kmeans/{POSITION_FILE}", files.kmeans_dir / POSITION_FILE)
    packer.add_file(f"kmeans/{PROVENANCE_FILE}", files.kmeans_dir / PROVENANCE_FILE)
    if km.get("unit_encoder"):  # the codebook clusters a unit encoder's states: audio needs the encoder too
        packer.add_tree(f"kmeans/{UNIT_ENCODER_DIR}", files.kmeans_dir / UNIT_ENCODER_DIR)
    ckpt = (km.get("upstream_conf") or {}).get("ckpt") if isinstance(km.get("upstream_conf"), dict) else None
    if ckpt and Path(ckpt).is_file():  # an SSL upstream's weights (hubert_local ...): the features need them
        manifest["upstream_ckpt"] = f"kmeans/upstream/{Path(ckpt).name}"
        packer.add_file(manifest["upstream_ckpt"], Path(ckpt))
    elif ckpt and Path(ckpt).is_dir():  # a Hugging Face model dir (hf_hubert_custom ...)
        manifest["upstream_ckpt"] = "kmeans/upstream"
        packer.add_tree(manifest["upstream_ckpt"], Path(ckpt))
    elif ckpt:
        logger.warning("the feature upstream's ckpt %s does not exist here: not packed (the machine that runs the "
                       "model needs it at that path)", ckpt)
    manifest["kmeans"] = km
    manifest["source"]["kmeans_dir"] = str(files.kmeans_dir.resolve())
    if files.vocoder_dir is not None:
        info = read_json(files.vocoder_dir / "vocoder.json")
        check_provenance(info["inventory"], speech.provenance, INVENTORY_KEYS,
                         f"the vocoder {files.vocoder_dir} vs the speech tokens of {files.fusion_dir}")
        for name in VOCODER_FILES:
            packer.add_file(f"vocoder/{name}", files.vocoder_dir / name)
        packer.add_file(f"vocoder/{PACKED_WEIGHTS}", files.vocoder_dir / files.vocoder_checkpoint)
        manifest["vocoder"] = {"fs": info["fs"], "speakers": info["speakers"], "target_speaker": info["target_speaker"]}
        manifest["source"]["vocoder_dir"] = str(files.vocoder_dir.resolve())
    elif require_vocoder:
        raise FileNotFoundError(f"no vocoder trained on the units of {files.fusion_dir}: pass --vocoder_dir")
    else:
        logger.warning("no vocoder packed: the model will transcribe and decode units, but not speak")
    settings = files.decode_config or {}
    if (settings.get("text") or {}).get("lexicon"):  # only its words travel, as one Kaldi text line
        from zipper.inference.lexicon import read_words

        packer.texts[LEXICON_FILE] = "lexicon " + " ".join(sorted(read_words(settings["text"]["lexicon"]))) + "\n"
        settings = {**settings, "text": {**settings["text"], "lexicon": LEXICON_FILE}}
    packer.texts[DECODE_FILE] = yaml.safe_dump(settings, sort_keys=True)
    manifest["decode_config"] = settings
    packer.write(output, manifest)
    return manifest


# ---------------------------------------------------------------------------------------------------- opening
def verify_zip(path: Path) -> tuple[zipfile.ZipFile, dict[str, Any]]:
    """The open zip and its manifest, after checking every member's sha256 against the manifest."""
    import json

    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise PackError(f"{path}: not a complete packed model (truncated or not a zip file): {e}") from e
    try:
        names = set(z.namelist())
        if MANIFEST not in names:
            raise PackError(f"{path}: no {MANIFEST}: not a packed Zipper model")
        manifest = json.loads(z.read(MANIFEST).decode("utf-8"))
        if manifest.get("format") != FORMAT:
            raise PackError(f"{path}: format {manifest.get('format')!r}, this code reads {FORMAT!r}")
        expected = manifest.get("files", {})
        for member in sorted(names - set(expected) - {MANIFEST}):
            raise PackError(f"{path}: member {member} is not in the manifest (the file was altered)")
        for member, checksum in sorted(expected.items()):
            if member not in names:
                raise PackError(f"{path}: member {member} is missing (the file is truncated or altered)")
            digest = hashlib.sha256()
            with z.open(member) as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != checksum:
                raise PackError(f"{path}: member {member} does not match its checksum in the manifest "
                                "(the file was altered or damaged)")
    except PackError:
        z.close()
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as e:
        z.close()
        raise PackError(f"{path}: damaged packed model: {e}") from e
    return z, manifest


def verify_dir(root: Path) -> dict[str, Any]:
    """An unzipped packed model: the manifest, after checking every member's sha256."""
    manifest = read_json(root / MANIFEST)
    if manifest.get("format") != FORMAT:
        raise PackError(f"{root}: format {manifest.get('format')!r}, this code reads {FORMAT!r}")
    for member, checksum in sorted(manifest.get("files", {}).items()):
        path = root / member
        if not path.is_file():
            raise PackError(f"{root}: member {member} is missing")
        if sha256_file(path) != checksum:
            raise PackError(f"{root}: member {member} does not match its checksum in the manifest (altered)")
    return manifest


def resolve_paths(root: Path, manifest: dict[str, Any]) -> None:
    """Rewrite the packed configs' path keys, relative to the pack, as absolute paths under `root`."""
    for member, keys in manifest.get("paths", {}).items():
        path = root / member
        config = read_yaml(path)
        for key in keys:
            config[key] = str(root / config[key])
        path.unlink()  # may be a link to a read-only original
        path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")


def packed_files(root: Path, manifest: dict[str, Any], source: str) -> ModelFiles:
    vocoder = root / "vocoder" if (root / "vocoder" / PACKED_WEIGHTS).exists() else None
    ckpt = root / manifest["upstream_ckpt"] if manifest.get("upstream_ckpt") else None
    settings = read_yaml(root / DECODE_FILE)
    if (settings.get("text") or {}).get("lexicon"):
        settings["text"]["lexicon"] = str(root / settings["text"]["lexicon"])
    return ModelFiles(root / "model", PACKED_WEIGHTS, root / "kmeans", vocoder, PACKED_WEIGHTS,
                      settings, source, manifest=manifest, upstream_ckpt=ckpt,
                      towers_in_tower_files=bool(manifest.get("towers_in_tower_files")))


@contextlib.contextmanager
def open_model(path: str | os.PathLike, checkpoint: str = CHECKPOINT, kmeans_dir: str | None = None,
               vocoder_dir: str | None = None, vocoder_checkpoint: str = "vocoder.pth",
               decode_config: dict[str, Any] | None = None) -> Iterator[ModelFiles]:
    """ModelFiles of an experiment dir, a packed zip or an unzipped pack (checked; valid inside the block).

    decode_config: an experiment dir's search settings when given (else stage 10's); a packed model keeps its own.

    A packed model is extracted to a temporary dir that is removed when the block ends: load what you need
    inside it (models, tokenizers and centroids are then in memory).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model (an experiment dir or a packed .zip)")
    if path.is_dir() and not (path / MANIFEST).exists():
        yield experiment_files(path, checkpoint, kmeans_dir, vocoder_dir, vocoder_checkpoint, decode_config)
        return
    with tempfile.TemporaryDirectory(prefix="zipper_model_") as tmp:
        root = Path(tmp)
        if path.is_dir():
            manifest = verify_dir(path)
            for member in manifest["files"]:
                (root / member).parent.mkdir(parents=True, exist_ok=True)
                os.symlink((path / member).resolve(), root / member)
            shutil.copy(path / MANIFEST, root / MANIFEST)
        else:
            z, manifest = verify_zip(path)
            with z:
                z.extractall(root)
        resolve_paths(root, manifest)
        files = packed_files(root, manifest, str(path))
        if kmeans_dir:
            files.kmeans_dir = Path(kmeans_dir)
        if vocoder_dir:
            files.vocoder_dir, files.vocoder_checkpoint = Path(vocoder_dir), vocoder_checkpoint
        yield files


__all__ = ["ModelFiles", "PackError", "ProvenanceError", "experiment_files", "open_model", "pack"]
