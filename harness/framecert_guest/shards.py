"""Which shard of a stress run this process runs, and whether shard reports belong together.

`--shard I/N` names the shard; `--shard auto` (or `auto/N`) reads it from the scheduler that started the
process (docs/stress-at-scale.md):

- Slurm array jobs: SLURM_ARRAY_TASK_ID, counted from SLURM_ARRAY_TASK_MIN (an array may start at 1 or
  anywhere) in steps of SLURM_ARRAY_TASK_STEP, out of SLURM_ARRAY_TASK_COUNT;
- Kubernetes indexed Jobs: JOB_COMPLETION_INDEX (0-based); Kubernetes exports no count, so it comes from
  `auto/N` or FRAMECERT_SHARD_COUNT;
- GNU parallel: PARALLEL_SEQ (1-based), the count from `auto/N` or FRAMECERT_SHARD_COUNT.

A report records its shard ("I/N") and, for the children of `--jobs J`, its job ("k/J"). Reports merge only
when they are the pieces of one run (check_together): the same seed, total rounds, workload, oracle, guest
and profile, and every piece exactly once.
"""
import os
from typing import Dict, List, Mapping, Optional, Tuple

from .errors import GuestError, UsageError

COUNT_VARIABLE = "FRAMECERT_SHARD_COUNT"
# What `--shard` parsed to: (index, count), index None for `auto`, count None for a bare `auto`.
Spec = Tuple[Optional[int], Optional[int]]


def parse(text: str) -> Spec:
    """`I/N`, `auto` or `auto/N`; ValueError (argparse's message) otherwise."""
    head, slash, tail = text.partition("/")
    if head == "auto":
        if not slash:
            return None, None
        count = _positive(tail, f"shard {text!r}: N")
        return None, count
    try:
        index, count = int(head), int(tail)
    except ValueError:
        raise ValueError(f"not I/N, auto or auto/N: {text!r}") from None
    if not (count >= 1 and 1 <= index <= count):
        raise ValueError(f"shard {text!r}: need 1 <= I <= N")
    return index, count


def _positive(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what} is not a number: {text!r}") from None
    if value < 1:
        raise ValueError(f"{what} must be at least 1, not {value}")
    return value


def _env_int(env: Mapping[str, str], name: str) -> Optional[int]:
    if name not in env:
        return None
    try:
        return int(env[name])
    except ValueError:
        raise UsageError(f"--shard auto: {name}={env[name]!r} is not a number") from None


def _slurm(env: Mapping[str, str]) -> Optional[Tuple[int, Optional[int]]]:
    task = _env_int(env, "SLURM_ARRAY_TASK_ID")
    if task is None:
        return None
    first = _env_int(env, "SLURM_ARRAY_TASK_MIN") or 0
    step = _env_int(env, "SLURM_ARRAY_TASK_STEP") or 1
    if (task - first) % step:
        raise UsageError(f"--shard auto: SLURM_ARRAY_TASK_ID {task} is not on the array's steps "
                         f"({first}, {first + step}, ...); use a contiguous --array or --shard I/N")
    return (task - first) // step, _env_int(env, "SLURM_ARRAY_TASK_COUNT")


def _kubernetes(env: Mapping[str, str]) -> Optional[Tuple[int, Optional[int]]]:
    index = _env_int(env, "JOB_COMPLETION_INDEX")
    return None if index is None else (index, None)


def _gnu_parallel(env: Mapping[str, str]) -> Optional[Tuple[int, Optional[int]]]:
    seq = _env_int(env, "PARALLEL_SEQ")
    return None if seq is None else (seq - 1, None)


# name -> reader giving the 0-based index and the scheduler's own count (None: it exports none).
SCHEDULERS = {"Slurm (SLURM_ARRAY_TASK_ID)": _slurm, "Kubernetes (JOB_COMPLETION_INDEX)": _kubernetes,
              "GNU parallel (PARALLEL_SEQ)": _gnu_parallel}


def resolve(spec: Spec, env: Optional[Mapping[str, str]] = None) -> Tuple[int, int]:
    """The shard (I, N), 1-based, for `--shard` as parsed; `auto` read from `env` (default os.environ).
    UsageError (exit 2) when the scheduler's variables are missing, ambiguous or out of range."""
    index, count = spec
    if index is not None and count is not None:
        return index, count
    env = os.environ if env is None else env
    found = {name: got for name, read in SCHEDULERS.items() if (got := read(env)) is not None}
    if not found:
        raise UsageError("--shard auto: no scheduler's shard index in the environment (SLURM_ARRAY_TASK_ID, "
                         "JOB_COMPLETION_INDEX or PARALLEL_SEQ); give --shard I/N")
    if len(found) > 1:
        raise UsageError(f"--shard auto: ambiguous, {' and '.join(found)} are both set; give --shard I/N")
    (name, (index0, scheduler_count)), = found.items()
    total = _count(count, scheduler_count, env)
    if not 0 <= index0 < total:
        raise UsageError(f"--shard auto: {name} gives shard {index0 + 1}, out of range 1..{total}")
    return index0 + 1, total


def _count(given: Optional[int], scheduler: Optional[int], env: Mapping[str, str]) -> int:
    """The shard count: `auto/N`, the scheduler's, or FRAMECERT_SHARD_COUNT; all that are given must agree."""
    counts: Dict[str, int] = {}
    if given is not None:
        counts["auto/N"] = given
    if scheduler is not None:
        counts["the scheduler's count"] = scheduler
    from_env = _env_int(env, COUNT_VARIABLE)
    if from_env is not None:
        counts[COUNT_VARIABLE] = from_env
    if not counts:
        raise UsageError(f"--shard auto: no shard count; give --shard auto/N or set {COUNT_VARIABLE}")
    if len(set(counts.values())) > 1:
        raise UsageError("--shard auto: shard counts disagree: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    total = next(iter(counts.values()))
    if total < 1:
        raise UsageError(f"--shard auto: shard count {total}: must be at least 1")
    return total


# ---- merge: do these reports belong together? ----
# The summary fields that say which run a report belongs to, and how a refusal names them.
IDENTITY = (("seed", "seed"), ("total_rounds", "total rounds"), ("workload", "workload"), ("oracle", "oracle"),
            ("guest", "guest"), ("profile", "profile"), ("framecert", "framecert build"))


def identity(summary: dict) -> Dict[str, object]:
    """The run a report belongs to. Reports from before provenance was recorded lack some fields (None)."""
    prov = summary.get("provenance") or {}
    return {"seed": summary.get("seed"), "total_rounds": summary.get("total_rounds"),
            "workload": summary.get("workload"), "oracle": summary.get("oracle", "none"),
            "guest": prov.get("guest"), "profile": prov.get("profile"),
            # Verdicts of another build of the walker and validator are not the same experiment's.
            "framecert": prov.get("framecert")}


def split(text: str, what: str) -> Tuple[int, int]:
    """"I/N" (a shard) or "k/J" (a job) as ints."""
    try:
        a, b = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise GuestError(f"a report's {what} is not I/N: {text!r}") from None
    return a, b


def pieces(summary: dict) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """(shard I, N), (job k, J) of a report; a report without them is the whole run."""
    return split(summary.get("shard", "1/1"), "shard"), split(summary.get("job", "0/1"), "job")


def check_together(summaries: List[dict]) -> Tuple[int, int]:
    """Refuses (GuestError, one line) reports that are not the pieces of one run, each once; returns the shard
    the merge makes: (1, 1) for the whole run, or (I, N) when the reports are the --jobs children of shard I."""
    ids = [identity(s) for s in summaries]
    labels = [f"shard {s.get('shard', '1/1')}" for s in summaries]
    for key, name in IDENTITY:
        values = {str(i[key]) for i in ids}
        if len(values) > 1:
            which = ", ".join(f"{i[key]} ({label})" for i, label in zip(ids, labels))
            raise GuestError(f"merge: the reports are of different runs: {name} {which}")
    if not any("shard" in s for s in summaries):
        return 1, 1  # reports from before shards were recorded: only their rounds' overlap can be checked
    parts = [pieces(s) for s in summaries]
    counts = sorted({n for (_, n), _ in parts})
    if len(counts) > 1:
        raise GuestError(f"merge: the reports split the run differently: shards of {' and of '.join(map(str, counts))}")
    count = counts[0]
    by_shard: Dict[int, List[Tuple[int, int]]] = {}
    for (index, _), job in parts:
        by_shard.setdefault(index, []).append(job)
    for index, jobs in sorted(by_shard.items()):
        _check_jobs(index, count, jobs)
    if len(by_shard) == 1 and len(summaries) > 1 and count > 1:
        return next(iter(by_shard)), count  # the --jobs children of one shard: the merge is that shard
    missing = [i for i in range(1, count + 1) if i not in by_shard]
    if missing:
        raise GuestError(f"merge: shard{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(f'{i}/{count}' for i in missing)} missing")
    return 1, 1


def _check_jobs(index: int, count: int, jobs: List[Tuple[int, int]]):
    """The reports of shard `index`: one whole report, or each of its --jobs children exactly once."""
    where = f"shard {index}/{count}"
    totals = sorted({j for _, j in jobs})
    if len(totals) > 1 or (len(jobs) > 1 and totals == [1]):
        raise GuestError(f"merge: {where} is in more than one report")
    total = totals[0]
    seen = sorted(k for k, _ in jobs)
    repeated = sorted({k for k in seen if seen.count(k) > 1})
    if repeated:
        raise GuestError(f"merge: {where} job {repeated[0]}/{total} is in more than one report")
    missing = [k for k in range(total) if k not in seen]
    if missing:
        raise GuestError(f"merge: {where} job {missing[0]}/{total} is missing")


def merged_provenance(summaries: List[dict], command: List[str]) -> dict:
    """The merge's provenance: what all pieces share (their check_together fields, the framecert build among
    them) and each piece's own command."""
    provs = [s.get("provenance") or {} for s in summaries]
    return {"framecert": provs[0].get("framecert"), "guest": provs[0].get("guest"),
            "profile": provs[0].get("profile"), "command": command,
            "pieces": [{"shard": s.get("shard", "1/1"), "job": s.get("job", "0/1"),
                        "command": p.get("command"), "framecert": p.get("framecert")}
                       for s, p in zip(summaries, provs)]}
