"""Which model serves: registry aliases (``production``, ``candidate``) and their promotion history.

``ovc predict``, ``ovc serve`` and ``ovc classify`` use ``production`` by default; while no version
has been promoted, ``production`` falls back to the latest published version (the behaviour before
aliases existed). ``train-eval`` publishes a new version, sets it as ``candidate`` and promotes it
to ``production`` only when it beats the current production version on the validation metric by
``promote.margin`` (:func:`gate`); every change — and every rejection — is a row of ``promotions``
with both versions' figures. ``ovc registry promote|rollback`` do it by hand.

    set_alias(engine, "candidate", "v3")
    promote(engine, "v3")                 # production -> v3 (recorded with v2's and v3's figures)
    rollback(engine)                      # production -> the version it replaced
    resolve_version(engine, "production") # "v2"
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ovc.registry.models import ModelAlias, ModelVersion, Promotion
from ovc.registry.store import NotFoundError, RegistryError, get_model_version, latest_model_version

log = logging.getLogger(__name__)

PRODUCTION, CANDIDATE = "production", "candidate"
DEFAULT_REF = PRODUCTION  # what predict/serve/classify use when no version is named


@dataclass
class GateResult:
    """The promotion gate's decision with both versions' figures."""

    candidate: str
    production: str | None
    metric: str
    candidate_value: float | None
    production_value: float | None
    margin: float
    promoted: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _version(s: Session, name: str) -> ModelVersion:
    mv = s.scalar(select(ModelVersion).where(ModelVersion.name == name))
    if mv is None:
        raise NotFoundError(f"unknown model version {name!r}")
    return mv


def get_alias(engine: Engine, alias: str) -> str | None:
    """The version name an alias points at, or None."""
    with Session(engine) as s:
        return s.scalar(
            select(ModelVersion.name)
            .join(ModelAlias, ModelAlias.model_version_id == ModelVersion.id)
            .where(ModelAlias.name == alias)
        )


def list_aliases(engine: Engine) -> dict[str, str]:
    with Session(engine) as s:
        rows = s.execute(
            select(ModelAlias.name, ModelVersion.name).join(
                ModelVersion, ModelVersion.id == ModelAlias.model_version_id
            )
        ).all()
    return dict(sorted(rows))


def resolve_version(engine: Engine, ref: str = DEFAULT_REF) -> str:
    """A version name from ``ref``: an alias, ``"latest"`` or a version name.

    ``production`` with no production alias yet = the latest published version (logged).
    """
    if ref == "latest":
        mv = latest_model_version(engine)
        if mv is None:
            raise NotFoundError("no model version is published yet (run `ovc stage publish`)")
        return mv.name
    target = get_alias(engine, ref)
    if target is not None:
        return target
    if ref == PRODUCTION:
        mv = latest_model_version(engine)
        if mv is None:
            raise NotFoundError("no model version is published yet (run `ovc stage publish`)")
        log.info("no 'production' alias yet: using the latest version %s", mv.name)
        return mv.name
    if ref == CANDIDATE:
        raise NotFoundError("no 'candidate' alias is set")
    return ref


def pin_version(engine: Engine, ref: str = DEFAULT_REF) -> str | None:
    """The one version a whole call embeds labels with: ``ref`` (alias, ``"latest"`` or a name) resolved once.

    Returns None when ``ref`` is ``latest``/``production`` and nothing is published yet (the caller then
    registers labels without embeddings; the first ``publish`` embeds them). An unknown version name or
    an unset ``candidate`` raises NotFoundError, naming it. ``ovc vocab add`` and the vocab-refresh flow
    both call this, so they pin alike.
    """
    if ref in ("latest", PRODUCTION) and latest_model_version(engine) is None:
        return None
    return get_model_version(engine, resolve_version(engine, ref)).name


def figures(mv: ModelVersion, metric: str, split: str = "val") -> dict[str, Any]:
    """``{"version", "metric", "value"}`` of a version: metrics[split][its method][metric] (None if absent)."""
    method = (mv.params or {}).get("method")
    value = None
    m = mv.metrics or {}
    entry = (m.get(split) or {}).get(method) if method else None
    if isinstance(entry, dict) and isinstance(entry.get(metric), (int, float)):
        value = float(entry[metric])
    return {"version": mv.name, "metric": f"{split}.{method}.{metric}", "value": value}


def _move(
    engine: Engine, alias: str, version: str, action: str, note: str | None, metric: str, split: str
) -> dict[str, Any]:
    with Session(engine) as s, s.begin():
        to = _version(s, version)
        row = s.get(ModelAlias, alias)
        frm = s.get(ModelVersion, row.model_version_id) if row is not None else None
        if row is None:
            s.add(ModelAlias(name=alias, model_version_id=to.id))
        else:
            row.model_version_id = to.id
            row.updated_at = _now()
        rec = Promotion(
            alias=alias,
            action=action,
            from_version_id=frm.id if frm else None,
            to_version_id=to.id,
            from_figures=figures(frm, metric, split) if frm else None,
            to_figures=figures(to, metric, split),
            note=note,
        )
        s.add(rec)
        return {"alias": alias, "action": action, "from": frm.name if frm else None, "to": to.name}


def _now():
    from datetime import datetime

    return datetime.now(UTC)


def set_alias(
    engine: Engine, alias: str, version: str, *, note: str | None = None, metric: str = "aupr_micro", split: str = "val"
) -> dict[str, Any]:
    """Point ``alias`` at ``version`` (recorded as action ``set``)."""
    if not alias or len(alias) > 64 or alias == "latest":
        raise RegistryError(f"bad alias name {alias!r} (1-64 characters, not 'latest')")
    return _move(
        engine, alias, resolve_version(engine, version) if version == "latest" else version, "set", note, metric, split
    )


def promote(
    engine: Engine,
    version: str,
    alias: str = PRODUCTION,
    *,
    note: str | None = None,
    metric: str = "aupr_micro",
    split: str = "val",
) -> dict[str, Any]:
    """Point ``alias`` (production) at ``version`` — an alias (``candidate``) or a version name."""
    name = (
        resolve_version(engine, version) if version in (CANDIDATE, "latest") or get_alias(engine, version) else version
    )
    return _move(engine, alias, name, "promote", note, metric, split)


def rollback(
    engine: Engine, alias: str = PRODUCTION, *, note: str | None = None, metric: str = "aupr_micro", split: str = "val"
) -> dict[str, Any]:
    """Point ``alias`` back at the version its last promote/set replaced (recorded as ``rollback``)."""
    with Session(engine) as s:
        cur = s.get(ModelAlias, alias)
        if cur is None:
            raise NotFoundError(f"alias {alias!r} is not set: nothing to roll back")
        last = s.scalar(
            select(Promotion)
            .where(
                Promotion.alias == alias,
                Promotion.to_version_id == cur.model_version_id,
                Promotion.action.in_(("set", "promote", "rollback")),
            )
            .order_by(Promotion.id.desc())
            .limit(1)
        )
        if last is None or last.from_version_id is None:
            raise RegistryError(f"alias {alias!r} has no earlier version to roll back to")
        prev = s.get(ModelVersion, last.from_version_id)
        if last.action == "rollback":  # roll back the rollback's source: walk further back
            prev_promo = s.scalar(
                select(Promotion)
                .where(
                    Promotion.alias == alias,
                    Promotion.to_version_id == last.to_version_id,
                    Promotion.action.in_(("set", "promote")),
                    Promotion.id < last.id,
                )
                .order_by(Promotion.id.desc())
                .limit(1)
            )
            if prev_promo is None or prev_promo.from_version_id is None:
                raise RegistryError(f"alias {alias!r} has no earlier version to roll back to")
            prev = s.get(ModelVersion, prev_promo.from_version_id)
        assert prev is not None  # from_version_id is a foreign key to model_versions
        name = prev.name
    return _move(engine, alias, name, "rollback", note, metric, split)


def history(engine: Engine, alias: str | None = None) -> list[dict[str, Any]]:
    """Promotion records, oldest first (``from``/``to`` version names and figures)."""
    with Session(engine) as s:
        stmt = select(Promotion).order_by(Promotion.id)
        if alias:
            stmt = stmt.where(Promotion.alias == alias)
        names: dict[int | None, str] = dict(s.execute(select(ModelVersion.id, ModelVersion.name)).all())
        return [
            {
                "alias": p.alias,
                "action": p.action,
                "from": names.get(p.from_version_id),
                "to": names.get(p.to_version_id),
                "from_figures": p.from_figures,
                "to_figures": p.to_figures,
                "note": p.note,
                "at": str(p.created_at),
            }
            for p in s.scalars(stmt)
        ]


def gate(
    engine: Engine, version: str, *, metric: str = "aupr_micro", split: str = "val", margin: float = 0.0
) -> GateResult:
    """Set ``version`` as ``candidate``; promote it to ``production`` iff it beats production by ``margin``.

    "Beats" = ``candidate_value >= production_value + margin`` on ``metrics[split][method][metric]``
    (higher is better). No production alias yet: the candidate is promoted. A candidate without
    the metric is never promoted. A rejection is recorded too (action ``rejected``).
    """
    set_alias(engine, CANDIDATE, version, note="published by train-eval", metric=metric, split=split)
    prod = get_alias(engine, PRODUCTION)
    with Session(engine) as s:
        cand_f = figures(_version(s, version), metric, split)
        prod_f = figures(_version(s, prod), metric, split) if prod else None
    cv, pv = cand_f["value"], prod_f["value"] if prod_f else None
    if prod == version:
        res = GateResult(version, prod, metric, cv, pv, margin, False, "already production")
        return res
    if cv is None:
        ok, why = False, f"candidate {version} has no {cand_f['metric']}"
    elif prod is None:
        ok, why = True, "no production version yet"
    elif pv is None:
        ok, why = True, f"production {prod} has no {metric}; candidate has {cv:.4f}"
    else:
        ok = cv >= pv + margin
        why = f"{cand_f['metric']}: candidate {cv:.4f} vs production {pv:.4f} + margin {margin:g}"
    if ok:
        promote(engine, version, note=f"gate: {why}", metric=metric, split=split)
    else:
        with Session(engine) as s, s.begin():
            s.add(
                Promotion(
                    alias=PRODUCTION,
                    action="rejected",
                    from_version_id=_version(s, prod).id if prod else None,
                    to_version_id=_version(s, version).id,
                    from_figures=prod_f,
                    to_figures=cand_f,
                    note=f"gate: {why}",
                )
            )
    return GateResult(version, prod, metric, cv, pv, margin, ok, why)


def gate_published(cfg: Any) -> dict[str, Any]:
    """The train-eval gate: the version of the last ``publish`` receipt becomes ``candidate`` and,
    if it beats ``production`` by ``promote.margin`` on ``promote.split``/``promote.metric``, ``production``.

    Returns the :class:`GateResult` as a dict (``{"skipped": reason}`` when nothing was published).
    """
    import json

    from ovc.paths import DataLayout
    from ovc.registry.db import open_registry

    path = DataLayout.of(cfg).publish_receipt
    if not path.is_file():
        return {"skipped": f"{path} not found: nothing published"}
    version = json.loads(path.read_text()).get("model_version")
    if not version:
        return {"skipped": f"{path} names no model version"}
    engine = open_registry(cfg)
    try:
        res = gate(engine, version, metric=cfg.promote.metric, split=cfg.promote.split, margin=cfg.promote.margin)
    finally:
        engine.dispose()
    log.info(
        "promotion gate: %s %s (%s)",
        version,
        "promoted to production" if res.promoted else "stays candidate",
        res.reason,
    )
    return res.to_dict()
