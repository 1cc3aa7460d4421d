"""Builders of the training corpus of `conf/dset/campaign.yaml`, apart from the `aeromamba`
package that every user trains and upsamples with: importing `aeromamba` loads none of this.

- `recordings`: produced game and film music decoded from Debian packages
  (`catalogues/recordings.yaml`);
- `rendered`: scores of the music21 corpus arranged and rendered with FluidSynth
  (`catalogues/rendered.yaml`);
- `mix`: the rendered and produced corpora linked into one source folder with its licences.

Their command lines are `scripts/build_recordings_corpus.py`, `scripts/build_music_corpus.py`
and `scripts/mix_corpora.py`; their extra dependencies come with `pip install -e ".[corpus]"`.
"""
