"""``aif train USE_CASE [--seed N] [--param KEY=VALUE ...] [--wait]``: ask the trainer for a training.

Submits through the trainer's gRPC API (``SubmitTraining``) and, with ``--wait``, polls
``GetTrainingJob`` and shows a progress bar over the epochs (early stopping may end it
before the last) with the latest losses, then the registered version and its metrics.
Exit status: 0 submitted (or, with ``--wait``, succeeded); 1 the job failed or was
skipped; 2 the request was refused or the trainer unreachable.

The trainer is ``--target`` or ``AIF_TRAINER_TARGET`` (default 127.0.0.1:50053); the
bearer token is ``--token`` or ``AIF_TOKEN`` (``aif token issue ...``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid

import grpc
from tqdm import tqdm

from aifactory.trainer.v1 import trainer_service_pb2 as pb
from aifactory.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from libs.rpc import insecure_channel

FINAL = {
    pb.TRAINING_JOB_STATE_SUCCEEDED,
    pb.TRAINING_JOB_STATE_FAILED,
    pb.TRAINING_JOB_STATE_CANCELLED,
    pb.TRAINING_JOB_STATE_SKIPPED,
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("train", help="request a training of a use case (and follow it with --wait)")
    parser.add_argument("use_case")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the spec's)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyper-parameter, e.g. epochs=10 or hidden=64,32 (repeatable)",
    )
    parser.add_argument("--request-id", default=None, help="idempotency key (default: a new one)")
    parser.add_argument(
        "--wait", action="store_true", help="follow the job until it ends, with a progress bar"
    )
    parser.add_argument("--target", default=os.environ.get("AIF_TRAINER_TARGET", "127.0.0.1:50053"))
    parser.add_argument("--token", default=os.environ.get("AIF_TOKEN") or None, help="bearer token")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between status polls")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="give up waiting after this many seconds"
    )


def run(args: argparse.Namespace) -> int:
    try:
        params = dict(_pair(p) for p in args.param)
    except ValueError as exc:
        print(f"aif train: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, params))


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
    async with insecure_channel(args.target, token=args.token) as channel:
        stub = pb_grpc.TrainerServiceStub(channel)
        try:
            job = (await stub.SubmitTraining(request, timeout=30)).job
        except grpc.aio.AioRpcError as exc:
            print(f"aif train: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 2
        note = f" — {job.message}" if job.message and job.message != _state(job) else ""
        print(f"job {job.job_id}: {_state(job)}{note}")
        if not args.wait:
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
