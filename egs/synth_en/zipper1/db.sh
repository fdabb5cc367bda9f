# Where the inputs of this recipe are on this machine; local/data.sh (stage 1) reads these.  Set the paths
# here, or export the variables before running (an exported value wins over the default).
#
# synth_en is built here, not downloaded: local/data.sh takes English sentences from Debian text packages
# (installed by tools/install.sh) and synthesises them with espeak-ng and flite.

# Where the wavs go (<SYNTH_EN>/wav/<spk>/<utt>.wav, ~1.3 GB with the default sizes); downloads/ is git-ignored.
SYNTH_EN=${SYNTH_EN:-downloads/synth_en}

# The text packages (Debian paths): fortunes, dict-gcide, wordnet-base, bible-kjv (+ bible-kjv-text).
FORTUNES=${FORTUNES:-/usr/share/games/fortunes}
GCIDE=${GCIDE:-/usr/share/dictd/gcide.dict.dz}
WORDNET=${WORDNET:-/usr/share/wordnet}
BIBLE_CMD=${BIBLE_CMD:-bible}
