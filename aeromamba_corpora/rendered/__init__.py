"""A corpus of real, varied music rendered from scores, built from package registries alone.

Scores come from the corpus that the `music21` package ships (Bach chorales, Mozart, Beethoven
and Haydn string quartets, Monteverdi madrigals, trecento and Renaissance polyphony, piano
pieces, songs, Irish and American fiddle tunes). Which collections, their licences and splits,
and the General MIDI sounds are data: ``aeromamba_corpora/catalogues/rendered.yaml``.

- `catalogue`: reads the catalogue, lists its pieces, orders each split's for a seed;
- `score`: a music21 score as note lists on a tick grid, and note lists as a MIDI file
  (both through music21's MIDI objects);
- `arrange`: the seeded arrangement (instruments, drums, bass, folk accompaniment, tempo);
- `render`: FluidSynth with the FluidR3_GM SoundFont at 44.1 kHz, trimmed and normalised;
- `build`: the corpus (OUT/{train,valid,test}/*.wav, sources.json, SOURCES.md) and the
  example clip. `scripts/build_music_corpus.py` is its command line.

Splits are by piece: some collections only ever appear in valid or test, the large ones are
split by a hash of the piece, and some programs and drum kits are heard only in valid and test.
Every choice comes from a generator seeded by (seed, piece), and each split takes its pieces in
a seeded order until its share of the minutes is met, so a seed gives the same files whatever
the number of worker processes.
"""

from aeromamba_corpora.rendered.build import BuildOptions, build_corpus, build_example
from aeromamba_corpora.rendered.catalogue import Catalogue, CatalogueError, load_catalogue
from aeromamba_corpora.rendered.render import SetupError, check_requirements

__all__ = [
    "BuildOptions",
    "Catalogue",
    "CatalogueError",
    "SetupError",
    "build_corpus",
    "build_example",
    "check_requirements",
    "load_catalogue",
]
