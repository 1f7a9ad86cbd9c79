"""The checker: judges one history against the semantics of docs/architecture.md, section 5.

How it is built: `build.build_model` reads the history once into a frozen `model.Model`;
`bounds.derive_bounds` fixes the bounds from it; each rule family in `rules/` (claims,
liveness, fallback, outcomes) is a pure function of the model and the bounds; `verdict.check`
runs them in a fixed order and assembles the `Verdict`.

Vocabulary:
- an *instance* is what one write armed; its id is its fire id;
- instances of one sender are ordered by the store: Redis instances by their version, the
  writes of one pod's fallback memory by that pod's order, a plain (five-method) store's by
  the order its writes completed;
- a *logical timer* groups the instances that carry one armed timeout across stores: an outage
  write merged into Redis, a write that timed out but landed after all, its fallback copy;
- the true deadline `D` of a logical timer is the true time its message was handled plus its
  timeout.

Rules (each violation points at its history rows):
- `duplicate`: a logical timer fired successfully under two different fire ids;
- `unexplained_refire`: the same fire id fired again without a crash, a failed fire, a lapsed
  lease, an outage of its claimer or a Redis restart to explain it;
- `superseded`: a claim that started after a newer write of the same sender had completed;
- `early`: a fire before `D - S` (S: the largest clock offset between pods);
- `lost`: current at the end, due before `end - bound`, never fired, and not a declared loss;
- `late`: fired later than `D + bound`, not counting time when no healthy pod could reach it;
- `fallback_activation` / `fallback_deactivation` / `fallback_flapping` / `spurious_fallback`;
- `unknown_instance`: a claim of an instance no write explains;
- `not_exercised`: a fault of the plan left no trace (an outage that never activated the
  fallback is a failed scenario, not a pass);
- `payload`: a fire that did not carry the `session_id`, `scheduled_time` or metadata (by
  digest) its instance was armed with;
- `write_failed`: a conversation's write (re-arm or end) failed outside every fault that could
  explain it: that user was left without the timer they asked for, or with one they ended;
- `store_error`: the store broke its contract: it raised something other than a connectivity
  error for a valid call, lacked a method, or returned the wrong type;
- `vacuous`: nothing was armed, or nothing ever fired: such a run proves nothing;
- `loop_stall`: a pod's event loop stalled longer than the run's bound (real processes
  measure it): every request and timer of that pod waited, as a synchronous Redis client
  inside async methods makes them wait.

Declared losses are counted by class and are never violations: what a Redis restart's
persistence mode lost (writes, and resurrections of cancelled or claimed timers), fallback
timers of a pod that crashed, at-most-once crashes between claim and fire, `skip_older_than`
skips, callbacks given up after their attempts, writes that failed while their pod could not
reach the store (`write_failed_outage`) or died mid-call (`write_failed_crash`).
"""

from harness.checker.bounds import Bound
from harness.checker.findings import Violation
from harness.checker.verdict import DECLARED, RULES, Verdict, check, check_run, load_rows

__all__ = ["DECLARED", "RULES", "Bound", "Verdict", "Violation", "check", "check_run", "load_rows"]
