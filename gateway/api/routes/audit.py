"""Audit routes: where the ledger is, receipt proofs, the settlement statement, and
verification jobs (POST to start one, GET to poll it)."""

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from gateway.api.deps import Auditor, RuntimeDep
from gateway.api.schemas.requests import MAX_PARTNER_ID
from gateway.api.schemas.responses import API_ERRORS, LedgerInfo, ReceiptProof, SettlementStatement, VerifyJob
from gateway.audit.jobs import VerifyJob as Job
from gateway.audit.jobs import VerifyJobs
from gateway.chain.ledger import artifact
from gateway.core.errors import ErrorCode, Invalid

router = APIRouter(tags=["audit"], responses=API_ERRORS)


@router.get("/v1/ledger", response_model=LedgerInfo)
def ledger_info(runtime: RuntimeDep) -> dict[str, Any]:
    """Where auditors look: chain id, contract address, deployment block, ABI."""
    return {
        "chain_id": runtime.ledger.chain_id,
        "address": runtime.ledger.address,
        "deployment_block": runtime.ledger.deployment_block,
        "abi": artifact()["abi"],
        "compiler": artifact()["compiler"]["version"],
    }


@router.get("/v1/audit/receipts/{partner_id}/{receipt_id:path}", response_model=ReceiptProof)
def receipt_proof(
    partner_id: Annotated[int, Path(ge=0, le=MAX_PARTNER_ID)],
    receipt_id: str,
    who: Auditor,
    runtime: RuntimeDep,
    kind: Annotated[str | None, Query(max_length=16)] = None,
) -> dict[str, Any]:
    """The stored receipt, its keccak-256 recomputed, and the on-chain event carrying it."""
    from gateway.audit.receipts import stored_receipt_proof

    with runtime.sessions() as session:
        return stored_receipt_proof(
            runtime.chain.w3, runtime.ledger, session, partner_id=partner_id, receipt_id=receipt_id, kind=kind
        )


@router.get("/v1/audit/settlement", response_model=SettlementStatement)
def settlement_statement(
    who: Auditor,
    runtime: RuntimeDep,
    period_from: Annotated[date, Query(alias="from")],
    period_to: Annotated[date, Query(alias="to")],
) -> dict[str, Any]:
    """SPEC section 5's statement for [from, to), computed from chain events alone."""
    from gateway.audit.settlement import settlement

    start = int(datetime(period_from.year, period_from.month, period_from.day, tzinfo=UTC).timestamp())
    end = int(datetime(period_to.year, period_to.month, period_to.day, tzinfo=UTC).timestamp())
    if end <= start:
        raise Invalid("the period must end after it starts", code=ErrorCode.VALIDATION_ERROR)
    statement = settlement(
        runtime.chain.w3,
        runtime.ledger,
        period_from=start,
        period_to=end,
        from_block=runtime.ledger.deployment_block,
    )
    return statement.as_json()


def _jobs(request: Request) -> VerifyJobs:
    jobs: VerifyJobs = request.app.state.audit_jobs
    return jobs


def _answer(job: Job, status: int) -> JSONResponse:
    return JSONResponse(job.as_json(), status_code=status, headers={"Location": f"/v1/audit/verify/{job.id}"})


@router.post("/v1/audit/verify", status_code=202, response_model=VerifyJob)
def start_verification(request: Request, who: Auditor) -> JSONResponse:
    """Starts a verification (or returns the one running): replay, views, index, receipts."""
    job, _ = _jobs(request).start()
    return _answer(job, 202)


@router.get(
    "/v1/audit/verify",
    response_model=VerifyJob,
    responses={202: {"model": VerifyJob, "description": "there was none: one was started"}},
)
def latest_verification(request: Request, who: Auditor) -> JSONResponse:
    """The latest verification job; starts one (202) if there has been none."""
    jobs = _jobs(request)
    job = jobs.latest()
    if job is None:
        job, _ = jobs.start()
        return _answer(job, 202)
    return _answer(job, 200)


@router.get("/v1/audit/verify/{job_id}", response_model=VerifyJob)
def verification(request: Request, job_id: str, who: Auditor) -> JSONResponse:
    """A verification job: its status, progress and, when done, every discrepancy."""
    return _answer(_jobs(request).get(job_id), 200)
