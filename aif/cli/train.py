"""``aif train USE_CASE [--seed N] [--param KEY=VALUE ...] [--wait] [--json]``: ask the trainer for a training.

Submits through the trainer's gRPC API (``SubmitTraining``) and, with ``--wait``, polls
``GetTrainingJob`` and shows a progress bar over the epochs (early stopping may end it
before the last) with the latest losses, then the registered version and its metrics.
Exit status: 0 submitted (or, with ``--wait``, succeeded); 1 the job failed or was
skipped; 2 the request was refused or the trainer unreachable.

The trainer is ``--target``, ``aif --trainer`` or ``AIF_TRAINER_TARGET`` (else the
context's); the bearer token ``--token``, ``aif --token``/``--token-file`` or ``AIF_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import Annotated

import grpc
import typer
from tqdm import tqdm

from aif.cli.output import CliError, emit_json, to_dict
from aif.cli.remote import Remote, remote
from aifactory.trainer.v1 import trainer_service_pb2 as pb
from aifactory.trainer.v1 import trainer_service_pb2_grpc as pb_grpc

HELP = "request a training of a use case (and follow it with --wait: a progress bar until it ends)"
FINAL = {
    pb.TRAINING_JOB_STATE_SUCCEEDED,
    pb.TRAINING_JOB_STATE_FAILED,
    pb.TRAINING_JOB_STATE_CANCELLED,
    pb.TRAINING_JOB_STATE_SKIPPED,
}


def train(
    ctx: typer.Context,
    use_case: str,
    seed: Annotated[int | None, typer.Option(help="random seed (default: the spec's)")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE",
            help="override a hyper-parameter, e.g. epochs=10 or hidden=64,32 (repeatable)",
        ),
    ] = None,
    request_id: Annotated[str | None, typer.Option(help="idempotency key (default: a new one)")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="follow the job until it ends, with a progress bar")
    ] = False,
    target: Annotated[str | None, typer.Option(help="the trainer (default: aif --trainer)")] = None,
    token: Annotated[
        str | None, typer.Option(help="bearer token (default: aif --token/--token-file)")
    ] = None,
    poll: Annotated[float, typer.Option(help="seconds between status polls")] = 0.5,
    timeout: Annotated[float, typer.Option(help="give up waiting after this many seconds")] = 3600.0,
    json_output: Annotated[bool, typer.Option("--json", help="print the job as JSON")] = False,
) -> None:
    try:
        params = dict(_pair(p) for p in param or [])
    except ValueError as exc:
        raise CliError(f"train: {exc}") from None
    r = remote(ctx)
    args = argparse.Namespace(
        use_case=use_case,
        seed=seed,
        param=param or [],
        request_id=request_id,
        wait=wait,
        target=r.target("trainer", target),
        token=r.bearer(token),
        poll=poll,
        timeout=timeout,
        json=json_output,
        remote=r,
    )
    raise typer.Exit(asyncio.run(_run(args, params)))


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--param {text!r} is not KEY=VALUE")
    return key, value


async def _run(args: argparse.Namespace, params: dict[str, str]) -> int:
    request = pb.SubmitTrainingRequest(
        use_case=args.use_case, params=params, request_id=args.request_id or f"cli-{uuid.uuid4().hex[:16]}"
    )
    if args.seed is not None:
        request.seed = args.seed
    r: Remote = getattr(args, "remote", None) or Remote()
    json_output = bool(getattr(args, "json", False))
    async with r.channel("trainer", target=args.target, token=args.token) as trainer:
        stub = pb_grpc.TrainerServiceStub(trainer)
        try:
            job = (await stub.SubmitTraining(request, timeout=30)).job
        except grpc.aio.AioRpcError as exc:
            print(f"aif train: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 2
        note = f" — {job.message}" if job.message and job.message != _state(job) else ""
        if not json_output:
            print(f"job {job.job_id}: {_state(job)}{note}")
        if not args.wait:
            if json_output:
                emit_json(to_dict(job))
            return 0 if job.state not in (pb.TRAINING_JOB_STATE_SKIPPED, pb.TRAINING_JOB_STATE_FAILED) else 1
        try:
            job = await _follow(stub, job, args.poll, args.timeout)
        except grpc.aio.AioRpcError as exc:
            print(f"aif train: lost the trainer: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 2
        except TimeoutError:
            print(
                f"aif train: job {job.job_id} still {_state(job)} after {args.timeout:.0f}s", file=sys.stderr
            )
            return 1
    if json_output:
        emit_json(to_dict(job))
        return 0 if job.state == pb.TRAINING_JOB_STATE_SUCCEEDED else 1
    return _summary(job)


async def _follow(
    stub: pb_grpc.TrainerServiceStub, job: pb.TrainingJob, poll: float, timeout: float
) -> pb.TrainingJob:
    bar: tqdm | None = None
    try:
        async with asyncio.timeout(timeout):
            while job.state not in FINAL:
                await asyncio.sleep(poll)
                job = (await stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job.job_id), timeout=30)).job
                if job.state == pb.TRAINING_JOB_STATE_RUNNING and bar is None and "epochs" in job.params:
                    bar = tqdm(
                        total=int(job.params["epochs"]),
                        unit="epoch",
                        desc=job.use_case,
                        file=sys.stderr,
                        dynamic_ncols=True,
                    )
                if bar is not None:
                    _advance(bar, job)
    finally:
        if bar is not None:
            bar.close()
    return job


def _advance(bar: tqdm, job: pb.TrainingJob) -> None:
    epochs = [m for m in job.metrics if m.step > 0]
    if not epochs:
        return
    last = max(m.step for m in epochs)
    latest = {m.name: m.value for m in epochs if m.step == last}
    bar.update(last - bar.n)
    bar.set_postfix(
        {k: f"{v:.4g}" for k, v in latest.items() if k != "samples_per_s"}
        | {"samples/s": f"{latest.get('samples_per_s', 0):,.0f}"},
        refresh=True,
    )


def _state(job: pb.TrainingJob) -> str:
    return pb.TrainingJobState.Name(job.state).removeprefix("TRAINING_JOB_STATE_").lower()


def _summary(job: pb.TrainingJob) -> int:
    if job.state != pb.TRAINING_JOB_STATE_SUCCEEDED:
        print(f"job {job.job_id}: {_state(job)}: {job.message}", file=sys.stderr)
        return 1
    final = {m.name: m.value for m in job.metrics if m.step == 0 and m.split == "validation"}
    shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(final.items()) if k not in ("best_epoch", "epochs"))
    print(
        f"job {job.job_id}: succeeded — {job.model.use_case}/{job.model.model_name} "
        f"v{job.model.version} (run {job.run_id}); {shown}"
    )
    return 0
