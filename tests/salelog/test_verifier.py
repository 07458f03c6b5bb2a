"""The verifier as a stranger runs it: salelog/verify.py copied to another directory, where
nothing of the project can be imported, against a real web server. On a sale a crowd
bought from, sequenced by the real scripts and built by a real worker, it says the receipt
of a win is in the log, the log is consistent and the winners were the first arrivals; on
a copy of a log with two entries swapped it names the proofs that failed; on a log whose
script refused a shopper while stock was left, the fairness check fails."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from salelog.models import Checkpoint, SaleLog
from tests.factories import auth, make_sale, make_shoppers
from tests.processes import ROOT, ChildProcess
from tests.salelog.logs import attempts, build_here, build_until, join, receipt, stream_write

pytestmark = pytest.mark.django_db(transaction=True)

OUTCOMES = ["NOT_STARTED", "SUCCESS", "SUCCESS", "ALREADY_PURCHASED", "SUCCESS", "SOLD_OUT", "SOLD_OUT", "ENDED"]


def _stranger(tmp_path: Path) -> Path:
    """A directory holding verify.py alone, as someone who downloaded it has it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ROOT / "salelog" / "verify.py", elsewhere / "verify.py")
    return elsewhere


def _env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE"}}


def _verify(cwd: Path, *args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    program = ["-m", "salelog.verify"] if module else ["verify.py"]
    return subprocess.run(
        [sys.executable, *program, "verify", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _lines(run: subprocess.CompletedProcess[str]) -> list[str]:
    return run.stdout.splitlines()


def _live_log(tmp_path: Path) -> tuple[int, Path, Path]:
    """A live sale of three units whose log holds OUTCOMES (checkpointed at 4 and at 8), a
    receipt of the win at seq 2 and the checkpoint of 4 as a shopper kept them."""
    sale = make_sale(stock=3)
    now_ms = int(timezone.now().timestamp() * 1000)
    entries = attempts(sale.pk, OUTCOMES, time_ms=now_ms)
    stream_write(sale.pk, entries[:4])
    build_here(sale_id=sale.pk)
    kept = tmp_path / "checkpoint-4.txt"
    kept.write_text(Checkpoint.objects.get(sale=sale, size=4).note, encoding="utf-8")
    stream_write(sale.pk, entries[4:])
    build_here(sale_id=sale.pk)
    assert Checkpoint.objects.filter(sale=sale, size=len(OUTCOMES)).exists()
    answer = tmp_path / "answer-2.json"
    answer.write_text(json.dumps({"status": "SUCCESS", "receipt": receipt(sale.pk, 2, entries[2])}), encoding="utf-8")
    return sale.pk, answer, kept


def test_a_crowds_sale_passes_the_verifier_run_from_elsewhere_with_a_winners_receipt(
    web_server: ChildProcess, celery_worker: ChildProcess, log_worker: ChildProcess, tmp_path: Path
) -> None:
    # Given 40 shoppers pressing "Buy" at once on a sale of three units
    sale = make_sale(stock=3)
    shoppers = make_shoppers(40)

    async def crowd() -> list[dict[str, object]]:
        async with httpx.AsyncClient(base_url=web_server.url, timeout=30) as client:
            answers = await asyncio.gather(
                *(client.post(f"/api/sales/{sale.pk}/purchase/", content=b"{}", headers=auth(t)) for _, t in shoppers)
            )
        return [answer.json() for answer in answers]

    answers = asyncio.run(crowd())
    sequenced = [answer for answer in answers if "receipt" in answer]
    won = [answer for answer in sequenced if answer["status"] == "SUCCESS"]
    assert len(won) == 3
    build_until(
        lambda: SaleLog.objects.filter(pk=sale.pk, size=len(sequenced)).exists(), what="every answer in the log"
    )
    kept = tmp_path / "win.json"
    kept.write_text(json.dumps(won[-1]), encoding="utf-8")

    # When someone else runs the verifier with the last winner's answer
    run = _verify(_stranger(tmp_path), web_server.url, str(sale.pk), "--receipt", str(kept))

    # Then the receipt is in the log, the log is consistent and the winners came first
    assert run.returncode == 0, run.stdout + run.stderr
    lines = _lines(run)
    seq = won[-1]["receipt"]["seq"]  # type: ignore[index]
    assert (
        f"PASS receipt win.json inclusion (entries): entry {seq} of the entries is the receipt's, and the entries "
        "hash to the checkpoint" in lines
    )
    assert f"PASS tree: the {len(sequenced)} entries hash to the checkpoint's root" in lines
    assert any(line.startswith("PASS winners: the 3 SUCCESS attempts are the first 3 of") for line in lines), lines


def test_the_verifier_run_from_elsewhere_passes_an_honest_log(web_server: ChildProcess, tmp_path: Path) -> None:
    sale_id, answer, kept = _live_log(tmp_path)
    elsewhere = _stranger(tmp_path)
    cannot = subprocess.run([sys.executable, "-c", "import salelog"], cwd=elsewhere, env=_env(), check=False)
    assert cannot.returncode != 0, "the project is importable there: the test would prove nothing"

    run = _verify(elsewhere, web_server.url, str(sale_id), "--receipt", str(answer), "--checkpoint", str(kept))

    assert run.returncode == 0, run.stdout + run.stderr
    lines = _lines(run)
    assert all(line.startswith(("PASS ", "INFO ")) for line in lines), lines
    checks = {line.split(":", 1)[0] for line in lines if line.startswith("PASS")}
    assert checks == {
        "PASS keys",
        "PASS checkpoint signature",
        "PASS entries",
        "PASS tree",
        "PASS receipt answer-2.json signature",
        "PASS receipt answer-2.json inclusion (audit path)",
        "PASS receipt answer-2.json inclusion (entries)",
        "PASS checkpoint checkpoint-4.txt signature",
        "PASS checkpoint checkpoint-4.txt consistency (proof)",
        "PASS checkpoint checkpoint-4.txt consistency (entries)",
        "PASS winners",
        "PASS window",
    }
    assert "PASS winners: the 3 SUCCESS attempts are the first 3 of 5 that could win (stock 3)" in lines
    # The same file as a module of the project gives the same verdict.
    assert _verify(ROOT, web_server.url, str(sale_id), "--receipt", str(answer), module=True).returncode == 0


def test_the_verifier_names_the_proofs_a_log_with_two_entries_swapped_fails(
    web_server: ChildProcess, tmp_path: Path
) -> None:
    sale_id, answer, kept = _live_log(tmp_path)
    served = httpx.get(f"{web_server.url}/api/sales/{sale_id}/log/entries", timeout=30).json()
    served[2], served[5] = served[5], served[2]  # the win at seq 2 and the SOLD_OUT at seq 5
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps(served), encoding="utf-8")

    run = _verify(
        _stranger(tmp_path),
        web_server.url,
        str(sale_id),
        "--entries",
        str(swapped),
        "--receipt",
        str(answer),
        "--checkpoint",
        str(kept),
    )

    assert run.returncode == 1, run.stdout + run.stderr
    lines = _lines(run)
    failed = {line.split(":", 1)[0] for line in lines if line.startswith("FAIL")}
    assert failed == {
        "FAIL entries",
        "FAIL tree",
        "FAIL receipt answer-2.json inclusion (entries)",
        "FAIL checkpoint checkpoint-4.txt consistency (entries)",
        "FAIL winners",
    }, lines
    assert any("index 2 holds the entry of seq 5" in line for line in lines), lines
    assert any(line.startswith("FAIL tree:") and "fail from seq 2 on" in line for line in lines), lines
    # What the log itself proves still holds: the receipt's audit path, the kept checkpoint.
    assert any(line.startswith("PASS receipt answer-2.json inclusion (audit path)") for line in lines), lines
    assert any(line.startswith("PASS checkpoint checkpoint-4.txt consistency (proof)") for line in lines), lines


def test_the_verifier_fails_a_log_that_refused_a_shopper_while_stock_was_left_and_checks_a_line(
    web_server: ChildProcess, tmp_path: Path
) -> None:
    now_ms = int(timezone.now().timestamp() * 1000)
    unfair = make_sale(stock=2)
    stream_write(unfair.pk, attempts(unfair.pk, ["SUCCESS", "SOLD_OUT", "SUCCESS", "SOLD_OUT"], time_ms=now_ms))
    build_here(sale_id=unfair.pk)
    queued = make_sale(stock=2, admission="queue")
    stream_write(
        queued.pk,
        [join(queued.pk, 0, 1), join(queued.pk, 1, 2), *attempts(queued.pk, ["SUCCESS"], first_seq=2, time_ms=now_ms)],
    )
    build_here(sale_id=queued.pk)
    elsewhere = _stranger(tmp_path)

    run = _verify(elsewhere, web_server.url, str(unfair.pk))
    assert run.returncode == 1
    assert "FAIL winners: seq 1 was refused SOLD_OUT while 1 of 2 units were left" in _lines(run), run.stdout
    assert "PASS tree: the 4 entries hash to the checkpoint's root" in _lines(run)

    run = _verify(elsewhere, web_server.url, str(queued.pk))
    assert run.returncode == 0, run.stdout
    assert "PASS line: 2 joins numbered 1..2 in log order" in _lines(run)
