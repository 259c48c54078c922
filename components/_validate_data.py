"""The body of the validate-data component (``components/validate_data.py``)."""

from __future__ import annotations


def run(dataset, validation, report, champion_settings: dict, drift_settings: dict) -> None:
    """Resolve the champion, compare this run's data with the champion's and the schema,
    write ``validation`` (JSON) and ``report`` (Markdown); raise when the run must stop."""
    import logging

    from tfopt import fsutil
    from tfopt.data import drift, schema, statistics
    from tfopt.deploy import champion as champion_lib
    from tfopt.reporting import data_report

    log = logging.getLogger("tfopt.validate_data")
    config = drift.DriftConfig(**drift_settings)
    info = schema.load_info(dataset.path)
    found = champion_lib.resolve_champion(**champion_settings)
    champion = found.to_dict()
    reference = None
    if found.uri:
        reference, note = champion_lib.champion_data(found.uri)
        champion["data_note"] = note
    result = drift.validate(statistics.data_record(info), reference, config)
    if found.uri and not result.champion_comparable:
        # accepted (else the run stops below): a champion of other classes / inputs cannot be
        # evaluated on this data
        champion.update(uri="", reason=f"{found.describe()} does not fit this data "
                        f"({'; '.join(result.schema)}): compared without a champion")  # fmt: skip
    payload = {
        "champion": champion,
        "validation": result.to_dict(),
        "dataset": {"name": info.name, "content_sha256": info.content_sha256},
        "champion_dataset": {
            k: (reference or {}).get("dataset", {}).get(k)
            for k in ("name", "content_sha256", "counts")
        },
    }
    fsutil.write_json(validation.path, payload)
    text = "\n".join(["# Data validation", "", *data_report.validation_lines(payload)]) + "\n"
    with fsutil.atomic_file(report.path) as fh:
        fh.write(text)
    for line in data_report.validation_lines(payload):
        if line:
            log.info("%s", line)
    who = f"champion {found.describe()}" if champion.get("uri") else "no champion"
    validation.metadata.update(
        {
            "status": result.status,
            "champion": champion.get("uri") or "",
            "anomalies": len(result.anomalies),
            "data_check": f"data {result.status.replace('_', ' ')}, {who}",  # the console's
        }
    )
    drift.check(result)
