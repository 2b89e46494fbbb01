"""``ovc vocab``, ``ovc registry`` and ``ovc classify``: the registry and inference from the shell.

    ovc vocab add --vocab retail labels.txt "red car" running     # files (one label a line) or labels
    ovc vocab ls [--vocab retail] [--json]
    ovc vocab rm --vocab retail ["red car" ...]                   # no labels: remove the vocabulary
    ovc registry ls [--json]                                       # versions, vocabularies, thresholds
    ovc registry upgrade                                           # migrate the schema (only writers migrate)
    ovc classify a.mp4 b.mp4 --vocab retail [--json] [--top-k 5] [--threshold 0.4|calibrated|none]

Registry URL: ``--registry URL`` > ``registry.url`` (params / ``-S``) > ``$OVC_REGISTRY_URL`` >
``sqlite:///<paths.data>/registry.db``. Read-only commands (``vocab ls``, ``registry ls``,
``classify``) never create, migrate or lock the registry; a missing registry is an error saying where
it was expected. Writers (``vocab add/rm``) migrate, and create a registry only at a URL you named. Label policy (normalisation, rejections): see
:mod:`ovc.registry.store`. Bad labels and unreadable videos are reported one by one on stderr and the
rest goes on.

Exit codes: 0 = done (possibly with per-item issues reported); 1 = nothing could be done (every label
rejected / every video unreadable); 2 = usage, config or registry error (unknown vocabulary, no
published model, missing artifact).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ovc.cli.common import (
    JsonOpt,
    ParamsOpt,
    RegistryOpt,
    SetOpt,
    err,
    fail,
    load_cfg,
    open_engine,
    quiet_logging,
    registry_session,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ovc.registry.store import LabelSpec

vocab_app = typer.Typer(no_args_is_help=True, help="Grow, list and shrink label vocabularies in the registry.")
registry_app = typer.Typer(
    no_args_is_help=True, help="Inspect the registry (model versions, vocabularies, thresholds)."
)

_LABEL_FILE_HINT = (".txt", ".tsv", ".csv", ".lst", ".labels")


@dataclass(frozen=True)
class InputIssue:
    """A rejected label, with where it came from (``labels.txt line 3`` / ``argument 2``)."""

    source: str
    label: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.label!r}: {self.reason}"


def gather_labels(items: list[str], max_label_chars: int) -> tuple[list[LabelSpec], list[InputIssue], list[str]]:
    """Labels from command-line items: an existing file is a label file, anything else one label.

    Returns (valid labels, unique after normalisation across all items; rejected ones; notes).
    """
    from ovc.registry.store import read_label_file, validate_labels

    specs: list[LabelSpec] = []
    issues: list[InputIssue] = []
    notes: list[str] = []
    seen: dict[str, str] = {}

    def take(source: str, found: list[LabelSpec]) -> None:
        for spec in found:
            if spec.text in seen:
                issues.append(InputIssue(source, spec.text, f"duplicate of {seen[spec.text]} (after normalisation)"))
            else:
                seen[spec.text] = source
                specs.append(spec)

    for pos, item in enumerate(items, start=1):
        path = Path(item)
        try:
            is_file = path.is_file()
        except (OSError, ValueError):  # e.g. a label longer than the OS allows for a file name
            is_file = False
        if is_file:
            try:
                found, bad = read_label_file(path, max_label_chars)
            except OSError as e:
                issues.append(InputIssue(item, item, f"cannot read file ({e.strerror or e})"))
                continue
            issues.extend(InputIssue(f"{item} line {i.line}", i.label, i.reason) for i in bad)
            take(item, found)  # duplicates inside the file are already issues with their line
            continue
        if looks_like_path(item) or (item.strip() and _is_dir(path)):  # Path("") is "."
            # "labels/retail.txt" that does not exist (a typo, the wrong directory) or a directory:
            # an error naming it, never a label called "labels/retail.txt"
            why = "is a directory" if _is_dir(path) else "does not exist"
            issues.append(InputIssue(f"argument {pos}", item, f"looks like a label file but {why}"))
            continue
        found, bad = validate_labels([item], max_label_chars)
        issues.extend(InputIssue(f"argument {pos}", i.label, i.reason) for i in bad)
        take(f"argument {pos}", found)
    return specs, issues, notes


def looks_like_path(item: str) -> bool:
    """A label argument that names a file: contains a path separator or ends with a label-file suffix."""
    return "/" in item or "\\" in item or item.lower().endswith(_LABEL_FILE_HINT)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _print_issues(issues: list[Any], what: str = "rejected") -> None:
    for issue in issues:
        err(f"  {what}: {issue}", "yellow")


# --------------------------------------------------------------------------------------------------
# ovc vocab ...
# --------------------------------------------------------------------------------------------------
@vocab_app.command("add")
def vocab_add(
    items: list[str] = typer.Argument(..., help="label files (one label a line, optional TAB kind) and/or labels"),
    vocab: str = typer.Option(..., "--vocab", help="vocabulary name (created if new)"),
    model_version: str = typer.Option(
        "production",
        "--model-version",
        help="version whose embeddings are computed: alias (production = promoted, else latest), 'latest' or a version name",
    ),
    no_embed: bool = typer.Option(False, "--no-embed", help="register the labels without embedding them"),
    as_json: bool = JsonOpt,
    registry: str = RegistryOpt,
    params: Path | None = ParamsOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Add labels to a vocabulary; only labels without an embedding for the version are encoded."""
    from ovc.infer.published import PublishedModelError, build_published, get_model_version
    from ovc.registry.aliases import pin_version
    from ovc.registry.store import RegistryError, add_labels

    quiet_logging()
    # the plan ("N to link, M to encode": totals of the whole call) is worth a line on stderr
    logging.getLogger("ovc.registry.store").setLevel(logging.INFO)
    cfg = load_cfg(params, set_)
    specs, issues, notes = gather_labels(items, cfg.registry.max_label_chars)
    for note in notes:
        err(note)
    _print_issues(issues)
    if not specs and issues:  # every label rejected: exit 1, and no (empty) vocabulary is created
        err(f"error: all {len(issues)} label(s) rejected; nothing added to {vocab!r}", "red")
        raise typer.Exit(1)
    engine = open_engine(cfg, registry, write=True)
    try:
        mv_name: str | None = None
        if not no_embed:
            # an alias is resolved once, like classify/predict/serve: the whole call embeds with one version
            mv_name = pin_version(engine, model_version)
            if mv_name is None:
                err(
                    "note: no model version is published yet; labels are registered without embeddings "
                    "(`ovc stage publish` embeds them)"
                )
        model_cache: dict[str, Any] = {}

        def encode_fn(labels: list[str]):
            if "model" not in model_cache:  # loaded on the first batch that needs it (the total is logged above)
                assert mv_name is not None  # encode_fn runs only when a version was resolved
                err(f"loading model version {mv_name} ...")
                model_cache["model"] = build_published(get_model_version(engine, mv_name), device=cfg.classify.device)
            return model_cache["model"].encode_labels(labels, batch_size=cfg.publish.batch_size)

        result = add_labels(
            engine,
            vocab,
            specs,
            encode_fn,
            mv_name,
            max_label_chars=cfg.registry.max_label_chars,
            batch_size=max(cfg.publish.batch_size, 256),
            progress=None,
        )
    except (RegistryError, PublishedModelError) as e:
        raise fail(str(e)) from None
    finally:
        engine.dispose()
    result.issues = []  # already reported with their source; the JSON carries the sourced ones
    if as_json:
        out = result.to_dict()
        out["issues"] = [vars(i) for i in issues]
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        typer.echo(
            f"vocabulary {vocab!r} (model version {result.model_version or '-'}): added {result.added}, "
            f"already present {result.already_present}, encoded {result.encoded}, reused {result.reused}, "
            f"rejected {len(issues)}"
        )
    if not specs and issues:
        raise typer.Exit(1)


@vocab_app.command("ls")
def vocab_ls(
    vocab: str | None = typer.Option(None, "--vocab", help="list this vocabulary's labels"),
    as_json: bool = JsonOpt,
    registry: str = RegistryOpt,
    params: Path | None = ParamsOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """List vocabularies (name, size) or one vocabulary's labels."""
    from ovc.registry.store import list_labels, list_vocabularies

    quiet_logging()
    # a RegistryError (unknown vocabulary ...) is an OvcError: the app prints it as one line, exit 2
    with registry_session(registry, params, set_) as (_, engine):
        if vocab is None:
            rows: list[dict[str, Any]] = [
                {"vocabulary": v.name, "labels": v.n_labels, "created_at": str(v.created_at)}
                for v in list_vocabularies(engine)
            ]
            if as_json:
                typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            else:
                width = max([len(r["vocabulary"]) for r in rows] + [10])
                typer.echo(f"{'vocabulary':{width}s}  {'labels':>7s}")
                for r in rows:
                    typer.echo(f"{r['vocabulary']:{width}s}  {r['labels']:7d}")
            return
        labels = list_labels(engine, vocab)
    if as_json:
        typer.echo(
            json.dumps(
                {"vocabulary": vocab, "labels": [{"label": s.text, "kind": s.kind} for s in labels]},
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        for s in labels:
            typer.echo(f"{s.text}\t{s.kind or ''}".rstrip("\t"))
        err(f"{len(labels)} label(s) in {vocab!r}")


@vocab_app.command("rm")
def vocab_rm(
    items: list[str] | None = typer.Argument(None, help="labels or label files to remove; none = the whole vocabulary"),
    vocab: str = typer.Option(..., "--vocab", help="vocabulary name"),
    prune: bool = typer.Option(
        False, "--prune", help="also delete labels left in no vocabulary, with their embeddings"
    ),
    as_json: bool = JsonOpt,
    registry: str = RegistryOpt,
    params: Path | None = ParamsOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Remove labels from a vocabulary, or the vocabulary itself (embeddings stay cached unless --prune)."""
    from ovc.registry.store import RegistryError, remove_labels, remove_vocabulary

    quiet_logging()
    cfg = load_cfg(params, set_)
    specs, issues, notes = gather_labels(list(items or []), cfg.registry.max_label_chars)
    for note in notes:
        err(note)
    _print_issues(issues)
    engine = open_engine(cfg, registry, write=True)
    try:
        if not items:
            out: dict[str, Any] = {
                "vocabulary": vocab,
                "removed_vocabulary": True,
                **remove_vocabulary(engine, vocab, prune_orphans=prune),
            }
            msg = f"removed vocabulary {vocab!r} ({out['labels']} label(s); {out['pruned']} pruned)"
        else:
            out = {"vocabulary": vocab, **remove_labels(engine, vocab, specs, prune_orphans=prune)}
            out["issues"] = [vars(i) for i in issues]
            msg = f"vocabulary {vocab!r}: removed {out['removed']}, not present {out['not_present']}, pruned {out['pruned']}, rejected {len(issues)}"
    except RegistryError as e:
        raise fail(str(e)) from None
    finally:
        engine.dispose()
    typer.echo(json.dumps(out, ensure_ascii=False, indent=2) if as_json else msg)


# --------------------------------------------------------------------------------------------------
# ovc registry ls
# --------------------------------------------------------------------------------------------------
def registry_overview(engine: Engine) -> dict[str, Any]:
    """Model versions (with embedding counts and thresholds), vocabularies and table counts."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from ovc.registry.models import Label, LabelEmbedding, Threshold, Vocabulary
    from ovc.registry.store import counts, list_model_versions, list_vocabularies

    with Session(engine) as s:
        n_emb = dict(
            s.execute(
                select(LabelEmbedding.model_version_id, func.count()).group_by(LabelEmbedding.model_version_id)
            ).all()
        )
        thr_rows = s.execute(
            select(Threshold.model_version_id, Threshold.scope, Vocabulary.name, Label.text, Threshold.value)
            .outerjoin(Vocabulary, Vocabulary.id == Threshold.vocabulary_id)
            .outerjoin(Label, Label.id == Threshold.label_id)
            .order_by(Threshold.model_version_id, Threshold.id)
        ).all()
    thresholds: dict[int, list[dict[str, Any]]] = {}
    for mv_id, scope, vname, text, value in thr_rows:
        thresholds.setdefault(mv_id, []).append({"scope": scope, "vocabulary": vname, "label": text, "value": value})
    versions = []
    for mv in list_model_versions(engine):
        params = mv.params or {}
        versions.append(
            {
                "name": mv.name,
                "created_at": str(mv.created_at),
                "method": params.get("method"),
                "checkpoint_digest": mv.checkpoint_digest,
                "encoder_digest": mv.encoder_digest,
                "embed_dim": mv.embed_dim,
                "dvc_rev": mv.dvc_rev,
                "label_embeddings": int(n_emb.get(mv.id, 0)),
                "global_threshold": next(
                    (t["value"] for t in thresholds.get(mv.id, []) if t["scope"] == "global"), None
                ),
                "thresholds": thresholds.get(mv.id, []),
            }
        )
    return {
        "url": engine.url.render_as_string(hide_password=True),
        "model_versions": versions,
        "vocabularies": [{"name": v.name, "labels": v.n_labels} for v in list_vocabularies(engine)],
        "counts": counts(engine),
    }


@registry_app.command("ls")
def registry_ls(
    as_json: bool = JsonOpt,
    registry: str = RegistryOpt,
    params: Path | None = ParamsOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Model versions (digests, embeddings, thresholds), vocabularies and their sizes."""
    quiet_logging()
    with registry_session(registry, params, set_) as (_, engine):
        info = registry_overview(engine)
    if as_json:
        typer.echo(json.dumps(info, ensure_ascii=False, indent=2, default=str))
        return
    typer.echo(f"registry: {info['url']}")
    typer.echo(f"\nmodel versions ({len(info['model_versions'])}):")
    typer.echo(
        f"  {'name':10s} {'method':10s} {'checkpoint':12s} {'encoder':12s} {'dim':>5s} {'embeddings':>10s} {'threshold':>9s}  created"
    )
    for v in info["model_versions"]:
        thr = "-" if v["global_threshold"] is None else f"{v['global_threshold']:.4f}"
        typer.echo(
            f"  {v['name']:10s} {str(v['method'] or '-'):10s} {v['checkpoint_digest'][:12]:12s} {v['encoder_digest'][:12]:12s} "
            f"{v['embed_dim']:5d} {v['label_embeddings']:10d} {thr:>9s}  {v['created_at']}"
        )
        for t in v["thresholds"]:
            if t["scope"] != "global":
                where = " / ".join(x for x in (t["vocabulary"], t["label"]) if x)
                typer.echo(f"      threshold {t['scope']} {where}: {t['value']:.4f}")
    typer.echo(f"\nvocabularies ({len(info['vocabularies'])}):")
    for v in info["vocabularies"]:
        typer.echo(f"  {v['name']:30s} {v['labels']:8d} labels")


@registry_app.command("upgrade")
def registry_upgrade(
    registry: str = RegistryOpt,
    params: Path | None = ParamsOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Migrate the registry's schema to this ovc's head (read-only commands never migrate)."""
    from ovc.registry.db import current_revision, head_revision

    quiet_logging()
    cfg = load_cfg(params, set_)
    engine = open_engine(cfg, registry, write=True)  # writers migrate on open
    try:
        typer.echo(
            f"registry {engine.url.render_as_string(hide_password=True)} at schema revision "
            f"{current_revision(engine)} (head {head_revision()})"
        )
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------------
# ovc classify
# --------------------------------------------------------------------------------------------------
def _parse_threshold(value: str) -> Any:
    v = value.strip().lower()
    if v == "calibrated":
        return "calibrated"
    if v in ("none", "off"):
        return None
    try:
        x = float(v)
    except ValueError:
        raise fail(f"--threshold must be 'calibrated', 'none' or a number in [0, 1], got {value!r}") from None
    if not 0.0 <= x <= 1.0:
        raise fail(f"--threshold {x} is outside [0, 1] (scores are σ(s/τ) probabilities)")
    return x


def classify_cmd(
    videos: list[str] = typer.Argument(..., help="video files"),
    vocab: str = typer.Option(..., "--vocab", help="registry vocabulary to classify against"),
    as_json: bool = typer.Option(False, "--json", help="a JSON list, one {video, labels, error} per input"),
    top_k: int | None = typer.Option(None, "--top-k", min=0, help="at most K labels per video"),
    threshold: str = typer.Option(
        "calibrated", "--threshold", help="'calibrated' (registry), a number in [0, 1], or 'none'"
    ),
    model_version: str = typer.Option(
        "production", "--model-version", help="alias (production = promoted, else latest), 'latest' or a version name"
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="progress bar on stderr (default: when a terminal)"
    ),
    segments: bool = typer.Option(
        False, "--segments", help="label intervals over time (sliding windows): {label, start, end, score}"
    ),
    window_s: float | None = typer.Option(
        None, "--window-s", help="with --segments: window length in s (default segments.window_s)"
    ),
    stride_s: float | None = typer.Option(
        None, "--stride-s", help="with --segments: window step in s (default segments.stride_s)"
    ),
    registry: str = RegistryOpt,
    params: Path | None = ParamsOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Classify videos; unreadable files are reported and skipped (exit 1 only if none could be read)."""
    from ovc.infer.classifier import Classifier
    from ovc.infer.published import PublishedModelError
    from ovc.registry.store import RegistryError

    quiet_logging()
    thr = _parse_threshold(threshold)
    cfg = load_cfg(params, set_)
    engine = open_engine(cfg, registry)
    try:
        clf = Classifier.from_registry(model_version, vocab, cfg=cfg, engine=engine)
    except (RegistryError, PublishedModelError) as e:
        raise fail(str(e)) from None
    finally:
        engine.dispose()
    if segments:
        from ovc.cli.collections import print_segments

        try:
            code = print_segments(clf, videos, thr, window_s, stride_s, as_json, progress)
        except ValueError as e:
            raise fail(str(e)) from None
        raise typer.Exit(code)
    results = clf.classify(videos, top_k=top_k, threshold=thr, progress=progress)
    bad = [r for r in results if r.error]
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2))
    else:
        for r in results:
            typer.echo(r.video)
            if r.error:
                typer.echo(f"    error: {r.error}")
            elif not r.labels:
                typer.echo("    (no label above the threshold)")
            for x in r.labels:
                typer.echo(f"    {x['score']:.3f}  {x['label']}" + (f"  ({x['kind']})" if x["kind"] else ""))
    for r in bad:
        err(f"  unreadable: {r.error}", "yellow")
    err(
        f"classified {len(results) - len(bad)} of {len(results)} video(s) against {vocab!r} "
        f"({len(clf.labels)} labels, model version {clf.model.name})"
        + (f"; {len(bad)} could not be read" if bad else "")
    )
    if len(bad) == len(results):
        raise typer.Exit(1)
