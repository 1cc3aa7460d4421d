"""A corpus of produced music (real recordings) from Debian packages of free game music.

The packages, the folders that hold music in each, and which split each package (or album)
goes to are data: ``aeromamba_corpora/catalogues/recordings.yaml``. Building the corpus:

1. fetch each package's .deb with ``apt-get download`` (nothing is installed) into a cache;
2. extract it with ``dpkg-deb -x`` (zip archives such as .pk3 inside are read in place: a file
   in one is named by the archive's path followed by its own);
3. list the audio files: Ogg (Vorbis, Opus), FLAC, WAV and MP3 are decoded with soundfile;
   tracker modules, MIDI and headerless raw samples are recorded as skipped;
4. keep music only: files under the package's music folders (sound effects, speech and UI
   sounds live elsewhere) lasting at least ``min_seconds`` (shorter ones are jingles);
5. decode, measure duration and bandwidth (`aeromamba.data.bandwidth`), drop files whose
   bandwidth is under the split's minimum, and write the rest as
   ``OUT/{split}/produced/<package>__<path joined with __>.wav`` (original rate and channels;
   16-bit when the decoded signal fits in [-1, 1], else 32-bit float so that nothing clips);
6. write ``OUT/recordings.json`` (one record per audio file, used or skipped and why) and
   ``OUT/SOURCES.md``.

Reruns reuse every output that exists and whose record in recordings.json matches the
package version; outputs that the catalogue no longer puts where they are are removed.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import yaml

from aeromamba.data.bandwidth import RULE, measure_bandwidth
from aeromamba.errors import CatalogueError
from aeromamba.files import atomic_path

SPLITS = ("train", "valid", "test")
KIND = "produced"
CATALOGUE = files("aeromamba_corpora") / "catalogues" / "recordings.yaml"
DECODED = (".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3")
TRACKERS = (".mod", ".xm", ".it", ".s3m", ".mtm", ".669", ".med", ".umx", ".stm", ".far")
UNDECODED = {
    **dict.fromkeys(TRACKERS, "tracker module (not a recording)"),
    ".mid": "MIDI (not a recording)",
    ".midi": "MIDI (not a recording)",
    ".raw": "headerless raw samples (format not stated)",
}
ARCHIVES = (".pk3", ".zip")


@dataclass(frozen=True)
class PackageSpec:
    """One package of the catalogue.

    `music`: glob patterns (fnmatch, '*' crosses '/') of the paths inside the package that hold
    music; `groups`: (pattern, split) pairs, first match wins, for albums that go to another
    split than the package's `split`.
    """

    name: str
    split: str
    music: tuple[str, ...]
    groups: tuple[tuple[str, str], ...] = ()
    note: str = ""

    def split_of(self, path: str) -> str:
        for pattern, split in self.groups:
            if fnmatch.fnmatchcase(path, pattern):
                return split
        return self.split

    def is_music(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.music)


@dataclass(frozen=True)
class Catalogue:
    packages: tuple[PackageSpec, ...]
    min_seconds: float
    min_bandwidth_hz: dict[str, float]


def load_catalogue(path: str | os.PathLike | None = None) -> Catalogue:
    """Read and check a catalogue (YAML); the shipped one when `path` is None."""
    name = str(path or CATALOGUE)
    try:
        data = yaml.safe_load(Path(path).read_text() if path else CATALOGUE.read_text())
        packages = tuple(
            PackageSpec(
                name=entry["name"],
                split=entry["split"],
                music=tuple(entry["music"]),
                groups=tuple((g["match"], g["split"]) for g in entry.get("groups", [])),
                note=entry.get("note", ""),
            )
            for entry in data["packages"]
        )
        catalogue = Catalogue(
            packages=packages,
            min_seconds=float(data["min_seconds"]),
            min_bandwidth_hz={s: float(data["min_bandwidth_hz"][s]) for s in SPLITS},
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise CatalogueError(f"{name}: not a usable catalogue ({err!r})") from err
    names = [p.name for p in packages]
    if len(set(names)) != len(names):
        raise CatalogueError(f"{name}: a package is listed twice")
    for spec in packages:
        bad = {spec.split, *(s for _, s in spec.groups)} - set(SPLITS)
        if bad:
            raise CatalogueError(f"{name}: {spec.name}: unknown split {sorted(bad)}")
    return catalogue


# --- fetching and extracting ---------------------------------------------------------------


def run_command(args: list[str], cwd: Path | None = None) -> str:
    """Run a command; raise RuntimeError with its stderr's last line when it fails."""
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {tail}")
    return done.stdout


def fetch_package(name: str, cache: Path) -> Path:
    """The package's .deb in `cache`, downloaded with `apt-get download` unless already there."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{name}_*.deb"))
    if found:
        return found[-1]
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download.") as tmp:
        run_command(["apt-get", "download", name], cwd=Path(tmp))
        debs = list(Path(tmp).glob(f"{name}_*.deb"))
        if len(debs) != 1:
            raise RuntimeError(f"apt-get download {name}: expected one .deb, got {len(debs)}")
        return Path(shutil.move(str(debs[0]), cache / debs[0].name))


def deb_version(deb: Path) -> str:
    return run_command(["dpkg-deb", "-f", str(deb), "Version"]).strip()


def extract_package(deb: Path, dest: Path) -> Path:
    """Extract `deb` to dest/<deb stem>/ with `dpkg-deb -x` (once: the folder appears whole)."""
    root = dest / deb.stem
    if root.is_dir():
        return root
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{deb.stem}."))
    try:
        run_command(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


# --- licences -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stanza:
    patterns: tuple[str, ...]
    licence: str


def parse_dep5(text: str) -> list[Stanza] | None:
    """The Files stanzas of a DEP-5 (machine-readable) copyright file; None if not DEP-5.

    Continuation lines of a multi-line Files field are patterns too; the licence is the first
    line of the License field (its short name).
    """
    if not re.match(r"Format:\s*\S*copyright-format", text.lstrip()):
        return None
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, list[str]] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key].append(line.strip())
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = [value.strip()]
        if "Files" in fields and "License" in fields:
            patterns = tuple(p for line in fields["Files"] for p in line.split())
            stanzas.append(Stanza(patterns, fields["License"][0]))
    return stanzas


def licence_of(path: str, stanzas: Iterable[Stanza]) -> str | None:
    """Licence of the last stanza whose pattern matches `path` (DEP-5: the last match wins).

    DEP-5 patterns name paths of the source tree, whereas `path` is where the file is
    installed (usr/share/games/...), so a pattern is matched on its last two components
    against the path's last two: 'base/music/x.ogg' matches '.../0music.pk3/music/x.ogg',
    'debian/*' matches nothing installed and '*' matches everything.
    """
    tail = "/".join(path.split("/")[-2:])
    licence = None
    for stanza in stanzas:
        for pattern in stanza.patterns:
            end = "/".join(pattern.split("/")[-2:])
            if fnmatch.fnmatchcase(tail, end) or fnmatch.fnmatchcase(path.split("/")[-1], end):
                licence = stanza.licence
    return licence


def copyright_path(package: str) -> str:
    return f"usr/share/doc/{package}/copyright"


# --- finding and reading audio --------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """An audio file of a package: `path` inside the package, read from `file` (or from
    `archive`'s member `member` when it sits in a zip archive)."""

    path: str
    file: Path | None = None
    archive: Path | None = None
    member: str = ""

    def read(self) -> tuple[np.ndarray, int, str]:
        """Decode to float32 (channels, samples); returns (audio, rate, soundfile subtype)."""
        if self.file is not None:
            source: Any = str(self.file)
        else:
            with zipfile.ZipFile(self.archive) as archive:
                source = io.BytesIO(archive.read(self.member))
        with sf.SoundFile(source) as f:
            audio = f.read(dtype="float32", always_2d=True)
            return np.ascontiguousarray(audio.T), int(f.samplerate), f.subtype


def _suffix(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def find_audio(root: Path) -> tuple[list[Member], list[tuple[str, str]]]:
    """Audio files under an extracted package `root`, in path order.

    Returns (decodable members, [(path, reason)] of audio-like files that are skipped).
    """
    members: list[Member] = []
    skipped: list[tuple[str, str]] = []
    for file in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        path = file.relative_to(root).as_posix()
        suffix = _suffix(file.name)
        if suffix not in DECODED and suffix not in UNDECODED and suffix not in ARCHIVES:
            continue
        if file.is_symlink():
            skipped.append((path, f"symbolic link to {os.readlink(file)} (counted once)"))
        elif suffix in UNDECODED:
            skipped.append((path, UNDECODED[suffix]))
        elif suffix in ARCHIVES:
            inner_members, inner_skipped = _archive_audio(file, path)
            members += inner_members
            skipped += inner_skipped
        else:
            members.append(Member(path, file=file))
    return members, skipped


def _archive_audio(file: Path, path: str) -> tuple[list[Member], list[tuple[str, str]]]:
    members, skipped = [], []
    try:
        with zipfile.ZipFile(file) as archive:
            names = sorted(n for n in archive.namelist() if not n.endswith("/"))
    except zipfile.BadZipFile as err:
        return [], [(path, f"unreadable archive ({err})")]
    for name in names:
        suffix = _suffix(name)
        if suffix in DECODED:
            members.append(Member(f"{path}/{name}", archive=file, member=name))
        elif suffix in UNDECODED:
            skipped.append((f"{path}/{name}", UNDECODED[suffix]))
    return members, skipped


def output_name(package: str, path: str) -> str:
    """<package>__<path inside the package, '/' -> '__', suffix -> .wav>."""
    stem = os.path.splitext(path)[0]
    return f"{package}__{stem.replace('/', '__')}.wav"


# --- building -------------------------------------------------------------------------------


@dataclass
class Record:
    """One audio file of a package, used or skipped (then `reason` says why)."""

    package: str
    version: str
    path: str
    licence: str | None
    copyright: str
    split: str
    status: str = "skipped"
    reason: str = ""
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    subtype: str | None = None
    bandwidth_hz: float | None = None
    bandwidth_rule: int | None = None  # aeromamba.data.bandwidth.RULE that measured it
    output: str | None = None


@dataclass
class Package:
    """What was found of one package: version, copyright summary, its records."""

    name: str
    version: str = ""
    copyright: str = ""
    licences: list[str] = field(default_factory=list)
    dep5: bool = False
    error: str = ""
    records: list[Record] = field(default_factory=list)


def package_licences(root: Path, name: str) -> tuple[list[Stanza] | None, list[str]]:
    """(DEP-5 stanzas or None, licence names of all stanzas) from the package's copyright."""
    text_path = root / copyright_path(name)
    if not text_path.is_file():
        return None, []
    stanzas = parse_dep5(text_path.read_text(errors="replace"))
    return stanzas, sorted({s.licence for s in stanzas or []})


def _wav_subtype(audio: np.ndarray) -> str:
    # 16-bit rounding (-101 dBFS) lies far below any lossy codec's own noise; overshoots of a
    # decoded lossy stream above full scale would clip in 16 bits, so those files stay float.
    return "PCM_16" if float(np.abs(audio).max(initial=0.0)) <= 1.0 else "FLOAT"


MEASURED = ("sample_rate", "channels", "subtype", "duration_s", "bandwidth_hz", "bandwidth_rule")


def process_member(
    member: Member,
    record: Record,
    out: Path,
    catalogue: Catalogue,
    previous: dict[str, Any] | None,
    is_music: bool,
) -> Record:
    """Fill `record` for one member: classify, decode, measure, write its WAV.

    `previous` is the last run's record of the same file: its measurements are reused when
    they are of this package version and bandwidth rule, its WAV when it is where this run
    would write it.
    """
    if not is_music:
        record.reason = "not in the package's music folders (sound effect, speech or UI)"
        return record
    audio = None
    if _reusable(previous, record.version):
        for key in MEASURED:
            setattr(record, key, previous[key])
    else:
        try:
            audio, sr, record.subtype = member.read()
        except (sf.LibsndfileError, RuntimeError, zipfile.BadZipFile, OSError) as err:
            record.reason = f"cannot decode: {err}"
            return record
        if not np.isfinite(audio).all():
            record.reason = "decoded samples hold NaN or infinity"
            return record
        record.sample_rate, record.channels = sr, audio.shape[0]
        record.duration_s = round(audio.shape[1] / sr, 3)
        if record.duration_s >= catalogue.min_seconds:
            record.bandwidth_hz = round(measure_bandwidth(audio, sr))
            record.bandwidth_rule = RULE
    record.reason = _rejection(record, catalogue)
    if record.reason:
        return record
    output = Path(record.split) / KIND / output_name(record.package, record.path)
    if not _wav_in_place(out, output, previous, record.version):
        audio, sr, _ = member.read() if audio is None else (audio, record.sample_rate, "")
        with atomic_path(out / output) as tmp:
            sf.write(str(tmp), audio.T, sr, subtype=_wav_subtype(audio), format="WAV")
    record.status, record.output = "used", str(output)
    return record


def _reusable(previous: dict[str, Any] | None, version: str) -> bool:
    """Whether the last run measured this file, of this package version, with today's rule."""
    return bool(
        previous
        and previous.get("version") == version
        and previous.get("bandwidth_hz") is not None
        and previous.get("bandwidth_rule") == RULE
    )


def _wav_in_place(out: Path, output: Path, previous: dict[str, Any] | None, version: str) -> bool:
    """Whether OUT/output exists and the last run wrote it there from this package version."""
    return bool(
        (out / output).is_file()
        and previous
        and previous.get("version") == version
        and previous.get("output") == str(output)
    )


def _rejection(record: Record, catalogue: Catalogue) -> str:
    """Why a measured music file is not used ("" when it is)."""
    if record.duration_s is None or record.duration_s < catalogue.min_seconds:
        return f"shorter than {catalogue.min_seconds:g} s (jingle or sound effect)"
    least = catalogue.min_bandwidth_hz[record.split]
    if record.bandwidth_hz is None or record.bandwidth_hz < least:
        return f"band-limited: {record.bandwidth_hz} Hz < {least:g} Hz for {record.split}"
    return ""


def plan_package(
    spec: PackageSpec, cache: Path
) -> tuple[Package, list[Member], list[Stanza] | None]:
    """Fetch and extract one package; list its audio and read its copyright's stanzas.

    A package that cannot be fetched or extracted comes back with Package.error set.
    """
    package = Package(spec.name, copyright=copyright_path(spec.name))
    try:
        deb = fetch_package(spec.name, cache / "debs")
        package.version = deb_version(deb)
        root = extract_package(deb, cache / "extracted")
    except RuntimeError as err:
        package.error = str(err)
        return package, [], None
    stanzas, package.licences = package_licences(root, spec.name)
    package.dep5 = stanzas is not None
    members, skipped = find_audio(root)
    for path, reason in skipped:
        package.records.append(new_record(spec, package, path, stanzas, reason))
    return package, members, stanzas


def new_record(
    spec: PackageSpec, package: Package, path: str, stanzas: list[Stanza] | None, reason: str = ""
) -> Record:
    return Record(
        package=spec.name,
        version=package.version,
        path=path,
        licence=licence_of(path, stanzas) if stanzas else None,
        copyright=package.copyright,
        split=spec.split_of(path),
        reason=reason,
    )


def previous_records(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Records of the last run's recordings.json by (package, path); empty if none."""
    try:
        data = json.loads((out / "recordings.json").read_text())
        return {(r["package"], r["path"]): r for r in data["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def build_corpus(
    out: str | os.PathLike,
    cache: str | os.PathLike,
    catalogue: Catalogue,
    progress: Callable[[list[Any]], Iterable[Any]] = lambda jobs: jobs,
    log: Callable[[str], None] = print,
) -> list[Package]:
    """Build the corpus into `out` (see the module docstring); returns what each package gave.

    `progress` wraps the list of audio files to decode (tqdm, for instance); `log` receives
    one line per failure.
    """
    out, cache = Path(out), Path(cache)
    previous = previous_records(out)
    packages, jobs = [], []
    for spec in catalogue.packages:
        package, members, stanzas = plan_package(spec, cache)
        if package.error:
            log(f"{spec.name}: {package.error}")
        packages.append(package)
        jobs += [(spec, package, stanzas, member) for member in members]
    for spec, package, stanzas, member in progress(jobs):
        record = process_member(
            member,
            new_record(spec, package, member.path, stanzas),
            out,
            catalogue,
            previous.get((spec.name, member.path)),
            spec.is_music(member.path),
        )
        if record.reason.startswith("cannot decode"):
            log(f"{spec.name}: {member.path}: {record.reason}")
        package.records.append(record)
    for package in packages:
        package.records.sort(key=lambda r: r.path)
    for stale in remove_stale(out, packages):
        log(f"removed {stale}: the catalogue no longer puts it there")
    write_reports(out, packages, catalogue)
    return packages


def remove_stale(out: Path, packages: list[Package]) -> list[Path]:
    """Delete WAVs under OUT/*/produced/ of the catalogue's packages that no record uses."""
    used = {out / r.output for p in packages for r in p.records if r.output}
    names = tuple(f"{p.name}__" for p in packages)
    stale = [
        wav
        for split in SPLITS
        for wav in sorted((out / split / KIND).glob("*.wav"))
        if wav.name.startswith(names) and wav not in used
    ]
    for wav in stale:
        wav.unlink()
    return stale


def summary(packages: list[Package]) -> list[dict[str, Any]]:
    """Per package and split: files used, minutes, rates and bandwidths (min/median/max)."""
    rows = []
    for package in packages:
        for split in SPLITS:
            used = [r for r in package.records if r.status == "used" and r.split == split]
            if not used:
                continue
            bands = np.array([r.bandwidth_hz for r in used], dtype=float)
            rows.append(
                {
                    "package": package.name,
                    "split": split,
                    "files": len(used),
                    "minutes": round(sum(r.duration_s or 0.0 for r in used) / 60, 1),
                    "sample_rates": sorted({r.sample_rate for r in used}),
                    "bandwidth_hz": [int(bands.min()), int(np.median(bands)), int(bands.max())],
                }
            )
    return rows


def write_reports(out: Path, packages: list[Package], catalogue: Catalogue) -> None:
    """OUT/recordings.json (packages, summary, every file's record) and OUT/SOURCES.md."""
    data = {
        "catalogue": {
            "min_seconds": catalogue.min_seconds,
            "min_bandwidth_hz": catalogue.min_bandwidth_hz,
        },
        "packages": [{k: v for k, v in asdict(p).items() if k != "records"} for p in packages],
        "summary": summary(packages),
        "files": [asdict(r) for p in packages for r in p.records],
    }
    with atomic_path(out / "recordings.json") as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
    with atomic_path(out / "SOURCES.md") as tmp:
        tmp.write_text(sources_markdown(packages, catalogue))


def sources_markdown(packages: list[Package], catalogue: Catalogue) -> str:
    lines = [
        "# Produced recordings: sources",
        "",
        "Decoded from Debian packages (fetched with `apt-get download`, extracted with",
        "`dpkg-deb -x`). Each file's licence (the DEP-5 stanza of its package's copyright file",
        "that names it), copyright file and measured bandwidth are in recordings.json, with",
        "every licence a package's copyright file names. Kept: files under each package's",
        "music folders, at least",
        f"{catalogue.min_seconds:g} s long, with a measured bandwidth of at least "
        + ", ".join(f"{catalogue.min_bandwidth_hz[s]:g} Hz ({s})" for s in SPLITS)
        + ".",
        "",
        "| package | version | licences of the used files | used files | minutes | split |",
        "|---|---|---|---|---|---|",
    ]
    for p in packages:
        used = [r for r in p.records if r.status == "used"]
        minutes = sum(r.duration_s or 0.0 for r in used) / 60
        splits = ", ".join(sorted({r.split for r in used})) or "-"
        licences = ", ".join(sorted({r.licence or "not machine-readable" for r in used})) or "-"
        if p.error:
            licences = f"not fetched: {p.error}"
        lines.append(
            f"| {p.name} | {p.version} | {licences} | {len(used)} | {minutes:.1f} | {splits} |"
        )
    return "\n".join(lines) + "\n"
