"""schemathesis over ``/api/schema/`` against a real granian server, as an authenticated
shopper: every operation, a bounded number of generated requests each (valid and invalid),
and not one answer may be a 5xx or fall outside what the schema documents (status code,
content type, headers, body). Invalid input must be refused with a 4xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import make_sale, make_shopper
from tests.processes import OPEN_ADMISSION, ROOT, start_web

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)
MAX_EXAMPLES = 100
REPORT_DIR = ROOT / "artifacts" / "schemathesis"


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_schema() -> None:
    make_sale(stock=5, pow_difficulty=0)  # a live sale: some generated ids hit it
    _, token = make_shopper()
    web = start_web(env=OPEN_ADMISSION)
    try:
        command = [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{web.url}/api/schema/",
            "--checks", CHECKS,
            "--header", f"Authorization: Token {token}",
            "--max-examples", str(MAX_EXAMPLES),
            "--seed", "20261127",
            # One worker: with two, hypothesis's lambda descriptions hit CPython 3.11's "AST
            # constructor recursion depth mismatch" now and then (a tool error, not a finding).
            "--workers", "1",
            "--request-timeout", "30",
            "--generation-database", "none",
            "--suppress-health-check", "all",
            "--report", "junit",
            "--report-dir", str(REPORT_DIR),
            "--no-color",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=540, check=False)
    finally:
        web.stop()
    output = result.stdout + result.stderr
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "output.txt").write_text(output)
    assert result.returncode == 0, output[-12_000:]
    assert "No issues found" in output or "passed" in output, output[-4_000:]
