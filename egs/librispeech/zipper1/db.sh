# Where the corpora are on this machine; local/data.sh (stage 1) reads these.  Set the paths here, or export
# the variables before running (an exported value wins over the empty default).

# LibriSpeech (https://www.openslr.org/12), extracted: the directory holding train-clean-100/, dev-clean/, ...
# and SPEAKERS.TXT.  Required.
LIBRISPEECH=${LIBRISPEECH:-}

# librispeech-lm-norm.txt(.gz) (https://www.openslr.org/11): unpaired text for the text tower.  Optional:
# when empty, the unpaired text is the transcripts of the training subsets not used as paired data.
LIBRISPEECH_LM_TEXT=${LIBRISPEECH_LM_TEXT:-}

# Libri-Light (https://github.com/facebookresearch/libri-light): the directory holding small/ medium/ large/,
# unpaired speech for the speech tower.  Optional: when empty, the LibriSpeech training audio is used.
LIBRILIGHT=${LIBRILIGHT:-}

# A local HuBERT checkpoint (Hugging Face model dir, e.g. facebook/hubert-base-ls960) for the speech units.
# Optional: when empty, run.sh falls back to MFCC units and says so.
HUBERT_CKPT=${HUBERT_CKPT:-}
