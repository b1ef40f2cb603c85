"""Database maintenance for admins: indexes, expiry, trail purges, trust rebuilds, statistics.

Each task is a module-level function (`db=` first, keyword-only) that is
idempotent, honours `dry_run` (counts what it would change, changes nothing)
and returns a dict of what it did; `main()` is the command line that
`scripts/maintenance.py` and `flask maintenance` run.

Writes go in batches (`batch_size` ids at a time), never as one huge delete or
update, so a large purge does not hold the server or the oplog hostage.
"""
import argparse
import json
import logging
import sys
from collections import Counter, defaultdict
from datetime import timedelta

from pymongo import ASCENDING
from pymongo.errors import OperationFailure, PyMongoError

from allynet import audit, clock, realtime, scripting, trust
from allynet.db import INDEXES, ensure_indexes, update_batch
from allynet.errors import MONGO_DOWN_ERRORS, AllyNetError
from allynet.parties import service as parties_service

log = logging.getLogger("allynet.maintenance")

DEFAULT_BATCH = 1000


# --- ensure-indexes --------------------------------------------------------------------------


def ensure_indexes_task(*, db, config, dry_run=False):
    """Create missing declared indexes; report created (or missing, in a dry run), present, conflicts."""
    report = ensure_indexes(db, config, dry_run=dry_run)
    for label in report["created"]:
        log.info("%s index %s", "would create" if dry_run else "created", label)
    for label in report["conflicts"]:
        log.warning("index %s conflicts with its declaration (drop it by hand, then rerun)", label)
    return report


# --- expire ----------------------------------------------------------------------------------


def _ids_in_batches(collection, query, batch_size):
    """Yield lists of _ids matching `query`, re-querying after each batch (the caller removes them)."""
    while True:
        ids = [doc["_id"] for doc in collection.find(query, projection={"_id": 1})
               .sort("_id", ASCENDING).limit(batch_size)]
        if not ids:
            return
        yield ids
        if len(ids) < batch_size:
            return


def delete_in_batches(collection, query, *, batch_size=DEFAULT_BATCH, dry_run=False, bar=None, on_batch=None):
    """Delete what `query` matches, `batch_size` documents per delete; returns how many (would) go."""
    if dry_run:
        return collection.count_documents(query)
    removed = 0
    for ids in _ids_in_batches(collection, query, batch_size):
        if on_batch is not None:
            on_batch(ids)
        # The query again in the delete: a document changed since it was listed stays.
        removed += collection.delete_many({"$and": [{"_id": {"$in": ids}}, query]}).deleted_count
        if bar is not None:
            bar.update(len(ids))
    return removed


def _party_is_idle(db, party, cutoff):
    """No member update, join or message since `cutoff`."""
    if party.get("created_at") and party["created_at"] >= cutoff:
        return False
    recent_member = db.party_members.find_one(
        {"party_id": party["_id"], "$or": [{"last_update_at": {"$gte": cutoff}}, {"joined_at": {"$gte": cutoff}}]},
        projection={"_id": 1})
    if recent_member is not None:
        return False
    return db.party_messages.find_one({"party_id": party["_id"], "ts": {"$gte": cutoff}},
                                      projection={"_id": 1}) is None


def end_idle_parties(*, db, idle_hours, dry_run=False, now=None):
    """End active parties idle for `idle_hours`, as the leader's `end` does; returns their ids."""
    now = now or clock.now()
    cutoff = now - timedelta(hours=idle_hours)
    ended = []
    candidates = db.parties.find({"is_active": True, "created_at": {"$lt": cutoff}}, projection={"_id": 1,
                                                                                                 "created_at": 1})
    for party in list(candidates):
        if not _party_is_idle(db, party, cutoff):
            continue
        if dry_run:
            ended.append(party["_id"])
            continue
        if parties_service.end_as_system(db=db, party_id=party["_id"], reason="idle", now=now) is None:
            continue  # its leader ended it meanwhile
        log.info("ended idle party %s (no activity for %s h)", party["_id"], idle_hours)
        ended.append(party["_id"])
    return ended


def close_stale_sos(*, db, max_hours, dry_run=False, now=None):
    """Cancel SOS open longer than `max_hours`, exactly as the owner's cancel does; returns their ids."""
    from allynet.emergencies import service as emergencies_service

    now = now or clock.now()
    cutoff = now - timedelta(hours=max_hours)
    query = {"is_open": True, "created_at": {"$lt": cutoff}}
    closed = []
    for emergency in list(db.emergencies.find(query)):
        if dry_run:
            closed.append(emergency["_id"])
            continue
        try:
            # The service's own close: one compare-and-set with the timeline entry, then the
            # owner's active_emergency_id released and everyone told. `by` None: the system did it.
            emergencies_service.cancel_as_system(db=db, emergency=emergency)
        except AllyNetError:
            continue  # resolved or cancelled meanwhile
        audit.record(db=db, actor_id=None, action="emergency.expire", target_type="emergency",
                     target_id=emergency["_id"], before={"status": emergency["status"]},
                     after={"status": "cancelled"}, reason=f"open longer than {max_hours} h")
        log.info("cancelled SOS %s open since %s", emergency["_id"], emergency["created_at"])
        closed.append(emergency["_id"])
    return closed


def expire(*, db, config, dry_run=False, batch_size=DEFAULT_BATCH, now=None):
    """End idle parties, cancel stale SOS, remove expired reports (and their votes), votes of reports
    already gone, and expired alerts."""
    now = now or clock.now()
    parties = end_idle_parties(db=db, idle_hours=float(config["PARTY_IDLE_HOURS"]), dry_run=dry_run, now=now)
    sos = close_stale_sos(db=db, max_hours=float(config["SOS_MAX_HOURS"]), dry_run=dry_run, now=now)
    expired = {"expires_at": {"$lte": now}}
    votes = Counter()

    def drop_votes(report_ids):
        votes["n"] += db.report_votes.delete_many({"report_id": {"$in": report_ids}}).deleted_count

    reports = delete_in_batches(db.reports, expired, batch_size=batch_size, dry_run=dry_run, on_batch=drop_votes)
    orphans = drop_orphan_votes(db=db, dry_run=dry_run, batch_size=batch_size)
    alerts = delete_in_batches(db.alerts, expired, batch_size=batch_size, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    if reports or alerts or orphans:
        log.info("%s %d expired reports (%d votes), %d votes of reports already gone and %d expired alerts",
                 verb, reports, votes["n"], orphans, alerts)
    return {"parties_ended": len(parties), "sos_cancelled": len(sos), "reports_removed": reports,
            "report_votes_removed": votes["n"], "orphan_votes_removed": orphans, "alerts_removed": alerts}


def drop_orphan_votes(*, db, dry_run=False, batch_size=DEFAULT_BATCH):
    """Remove the vote records of reports that no longer exist (MongoDB's TTL monitor deletes an
    expired report without its votes); returns how many (would) go.

    Report ids come from a `$group` over the votes (a cursor: no distinct-size limit), checked
    against the reports `batch_size` at a time; a report voted on meanwhile still exists, so its
    votes stay."""
    removed = 0
    groups = db.report_votes.aggregate([{"$group": {"_id": "$report_id"}}], allowDiskUse=True)
    batch = []

    def sweep(report_ids):
        alive = {doc["_id"] for doc in db.reports.find({"_id": {"$in": report_ids}}, projection={"_id": 1})}
        gone = [report_id for report_id in report_ids if report_id not in alive]
        if not gone:
            return 0
        query = {"report_id": {"$in": gone}}
        if dry_run:
            return db.report_votes.count_documents(query)
        return db.report_votes.delete_many(query).deleted_count

    for group in groups:
        batch.append(group["_id"])
        if len(batch) >= batch_size:
            removed += sweep(batch)
            batch = []
    if batch:
        removed += sweep(batch)
    return removed


# --- purge-trails ----------------------------------------------------------------------------


def purge_trails(*, db, older_than_days, dry_run=False, batch_size=DEFAULT_BATCH, show_progress=None, now=None):
    """Delete trail points older than `older_than_days`, in batches; returns how many (would) go."""
    now = now or clock.now()
    query = {"ts": {"$lt": now - timedelta(days=older_than_days)}}
    if dry_run:
        return {"trail_points_removed": db.trail_points.count_documents(query)}
    total = db.trail_points.count_documents(query)
    with scripting.progress(total, "trail points", show_progress) as bar:
        removed = delete_in_batches(db.trail_points, query, batch_size=batch_size, bar=bar)
    if removed:
        log.info("removed %d trail points older than %s days", removed, older_than_days)
    return {"trail_points_removed": removed}


# --- recompute-trust -------------------------------------------------------------------------


def trust_event_counts(*, db):
    """{user_id: {event: n}} from the sources `allynet.trust` names, as they are in the database now."""
    sources = (
        ("report_confirmed", db.reports, {"confirmed": True}, "$user_id"),
        ("report_rejected", db.reports, {"status": "rejected"}, "$user_id"),
        ("help_completed", db.help_requests, {"status": "completed", "helper_id": {"$ne": None}}, "$helper_id"),
    )
    counts = defaultdict(dict)
    for event, collection, match, owner in sources:
        for row in collection.aggregate([{"$match": match}, {"$group": {"_id": owner, "n": {"$sum": 1}}}]):
            if row["_id"] is not None:
                counts[row["_id"]][event] = row["n"]
    return counts


def recompute_trust(*, db, dry_run=False, batch_size=DEFAULT_BATCH, show_progress=None):
    """Rebuild every user's trust events and score from the sources; returns scanned/changed counts.

    Each write is a compare-and-set on the events it replaces, so an event
    counted live meanwhile is not lost: that user is skipped (rerun to settle).
    """
    counts = trust_event_counts(db=db)
    now = clock.now()
    scanned = changed = skipped = 0
    total = db.users.count_documents({})
    with scripting.progress(total, "users", show_progress) as bar:
        last_id = None
        while True:
            query = {} if last_id is None else {"_id": {"$gt": last_id}}
            users = list(db.users.find(query, projection={"trust_events": 1, "trust_score": 1})
                         .sort("_id", ASCENDING).limit(batch_size))
            if not users:
                break
            last_id = users[-1]["_id"]
            writes = []
            for user in users:
                events = counts.get(user["_id"], {})
                score = trust.score_from_counts(events)
                current = user.get("trust_events")
                if (current or {}) == events and user.get("trust_score") == score:
                    continue
                # None matches a missing or null field; an embedded document matches exactly.
                guard = current
                writes.append(({"_id": user["_id"], "trust_events": guard},
                               {"$set": {"trust_events": events, "trust_score": score, "trust_updated_at": now}}))
            scanned += len(users)
            if writes and not dry_run:
                matched = update_batch(db.users, writes)
                changed += matched
                skipped += len(writes) - matched
            elif writes:
                changed += len(writes)
            bar.update(len(users))
    if changed:
        log.info("%s the trust score of %d of %d users", "would change" if dry_run else "changed", changed, scanned)
    if skipped:
        log.warning("%d users earned trust meanwhile and were left as they are: rerun to settle them", skipped)
    return {"users_scanned": scanned, "users_changed": changed, "users_skipped": skipped}


# --- stats -----------------------------------------------------------------------------------

# collection -> the field whose values are worth counting
BREAKDOWNS = {
    "users": "role",
    "emergencies": "status",
    "help_requests": "status",
    "parties": "is_active",
    "party_members": "active",
    "reports": "status",
}


def stats(*, db):
    """Documents per collection and per status, and index sizes where the server reports them."""
    names = sorted({collection for collection, _, _ in INDEXES} | set(db.list_collection_names()))
    result = {}
    for name in names:
        collection = db[name]
        entry = {"count": collection.count_documents({})}
        field = BREAKDOWNS.get(name)
        if field and entry["count"]:
            rows = collection.aggregate([{"$group": {"_id": f"${field}", "n": {"$sum": 1}}}])
            entry[f"by_{field}"] = {str(row["_id"]): row["n"] for row in sorted(rows, key=lambda r: str(r["_id"]))}
        if name == "users" and entry["count"]:
            entry["helpers"] = collection.count_documents({"is_helper": True})
            entry["verified_helpers"] = collection.count_documents({"is_helper": True, "verified": True})
        entry["index_sizes"] = _index_sizes(db, name)
        result[name] = entry
    return result


def _index_sizes(db, name):
    """{index name: bytes} from collStats, or None where the server (or mongomock) does not say."""
    try:
        reply = db.command("collStats", name)
    except (OperationFailure, NotImplementedError, TypeError, AttributeError):
        return None
    except PyMongoError as exc:
        if isinstance(exc, MONGO_DOWN_ERRORS):
            raise
        return None
    sizes = reply.get("indexSizes") if isinstance(reply, dict) else None
    return dict(sizes) if sizes else None


def format_stats(result):
    """Stats as aligned text lines."""
    lines = []
    for name, entry in result.items():
        extras = []
        for key, value in entry.items():
            if key.startswith("by_"):
                extras.append(" ".join(f"{k}={v}" for k, v in value.items()))
            elif key in ("helpers", "verified_helpers"):
                extras.append(f"{key}={value}")
        lines.append(f"{name:<20} {entry['count']:>9}  {'  '.join(extras)}".rstrip())
        if entry.get("index_sizes"):
            sizes = ", ".join(f"{index} {size / 1024:.0f} KiB" for index, size in entry["index_sizes"].items())
            lines.append(f"{'':<20} {'':>9}  indexes: {sizes}")
    return lines


# --- command line ----------------------------------------------------------------------------

DESCRIPTION = """\
Maintain the AllyNet database. Every command is idempotent (running it twice
changes nothing the second time), logs what it changed, and with --dry-run
only reports what it would change.

commands:
  ensure-indexes   create every declared index that is missing; report conflicts
                   (an existing index whose options differ: drop it by hand, rerun)
  expire           end parties idle for PARTY_IDLE_HOURS (default 12), cancel SOS
                   open longer than SOS_MAX_HOURS (default 24) with a timeline entry
                   (the owner's slot is freed, as on cancel), remove expired reports,
                   their votes and expired official alerts the TTL sweep missed
  purge-trails     delete trail points older than --older-than DAYS, in batches
  recompute-trust  rebuild every trust score from its sources (confirmed and
                   rejected reports, completed help requests), in batches
  stats            documents per collection and status; index sizes on MongoDB
"""

EPILOG = f"""\
examples:
  MONGO_URI=mongodb://localhost:27017 python scripts/maintenance.py stats
  python scripts/maintenance.py ensure-indexes --dry-run
  python scripts/maintenance.py expire
  python scripts/maintenance.py purge-trails --older-than 30
  python scripts/maintenance.py recompute-trust --batch-size 500
  FLASK_APP=allynet flask maintenance expire --dry-run   (the same, as a flask command)

Run `maintenance.py <command> --help` for a command's options.

{scripting.DATABASE_HELP}
With REDIS_URL set, `expire` also tells connected clients (party:ended,
emergency.status_changed) through the servers' Socket.IO queue.

{scripting.EXIT_CODES_HELP} ensure-indexes also exits 1 when it finds conflicts.
"""


def build_parser(prog=None):
    """The maintenance command's argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dry-run", action="store_true", help="report what would change; change nothing")
    common.add_argument("--mongo-uri", help="MongoDB to maintain (default: $MONGO_URI)")
    common.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                        help="documents per batched write (default: %(default)s)")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    common.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    commands.add_parser("ensure-indexes", parents=[common], help="create missing indexes, report conflicts",
                        description="Create every index allynet.db declares that is missing; report "
                                    "conflicting ones (exit 1).")
    commands.add_parser("expire", parents=[common], help="end idle parties, close stale SOS, drop expired items",
                        description="End parties idle for PARTY_IDLE_HOURS, cancel SOS open longer than "
                                    "SOS_MAX_HOURS, remove expired reports (and votes) and alerts.")
    purge = commands.add_parser("purge-trails", parents=[common], help="delete old trail points in batches",
                                description="Delete trail points older than --older-than DAYS, in batches.")
    purge.add_argument("--older-than", type=float, metavar="DAYS",
                       help="age in days (default: TRAIL_RETENTION_DAYS, 30)")
    commands.add_parser("recompute-trust", parents=[common], help="rebuild trust scores from their sources",
                        description="Rebuild every user's trust events and score (allynet.trust) from "
                                    "confirmed/rejected reports and completed help requests still in the "
                                    "database.")
    commands.add_parser("stats", parents=[common], help="counts per collection and status, index sizes",
                        description="Documents per collection and per status; index sizes where the "
                                    "server reports them (not on the embedded store).")
    return parser


def run_command(args, *, db, config):
    """Run one parsed command; returns (result dict, exit code)."""
    show = False if args.no_progress else None
    if args.command == "ensure-indexes":
        report = ensure_indexes_task(db=db, config=config, dry_run=args.dry_run)
        return report, scripting.EXIT_FAILED if report["conflicts"] else scripting.EXIT_OK
    if args.command == "expire":
        return expire(db=db, config=config, dry_run=args.dry_run, batch_size=args.batch_size), scripting.EXIT_OK
    if args.command == "purge-trails":
        days = args.older_than if args.older_than is not None else float(config["TRAIL_RETENTION_DAYS"])
        return purge_trails(db=db, older_than_days=days, dry_run=args.dry_run, batch_size=args.batch_size,
                            show_progress=show), scripting.EXIT_OK
    if args.command == "recompute-trust":
        return recompute_trust(db=db, dry_run=args.dry_run, batch_size=args.batch_size,
                               show_progress=show), scripting.EXIT_OK
    return stats(db=db), scripting.EXIT_OK


def print_result(args, result, out=None):
    """The command's result for a person (or as JSON with --json)."""
    out = out or sys.stdout
    if args.json:
        print(json.dumps(result, default=str, indent=2, sort_keys=True), file=out)
        return
    prefix = "dry run, nothing changed: " if args.dry_run and args.command != "stats" else ""
    if args.command == "stats":
        for line in format_stats(result):
            print(line, file=out)
    elif args.command == "ensure-indexes":
        created = "missing (would create)" if args.dry_run else "created"
        print(f"{prefix}{created}: {len(result['created'])}, present: {len(result['present'])}, "
              f"conflicts: {len(result['conflicts'])}", file=out)
        for key in ("created", "conflicts"):
            for label in result[key]:
                print(f"  {key}: {label}", file=out)
    else:
        print(prefix + ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in result.items()), file=out)


def _install_emitter(config):
    """Outside an app, publish Socket.IO events on the servers' Redis queue (when there is one)."""
    if not config.get("REDIS_URL"):
        return False
    try:
        realtime.external_emitter(config["REDIS_URL"], channel=config.get("SOCKETIO_CHANNEL", "allynet-socketio"))
    except Exception as exc:  # clients learn on their next read; the data change matters most
        log.warning("Socket.IO queue unavailable (%s); clients are not told live", exc)
        return False
    return True


def main(argv=None, db=None, config=None):
    """Run one maintenance command; returns the exit code. `db` given: use it (tests, flask CLI)."""
    parser = build_parser(prog="maintenance.py")
    args = parser.parse_args(argv)
    scripting.configure_logging(args.verbose)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if getattr(args, "older_than", None) is not None and not args.older_than > 0:
        parser.error("--older-than must be a positive number of days")
    config = scripting.load_config(args.mongo_uri, config)
    emitter = False
    try:
        if db is None:
            db = scripting.open_database(config)
            emitter = not args.dry_run and _install_emitter(config)
        else:
            scripting.note_embedded(db, config)
        result, code = run_command(args, db=db, config=config)
    except scripting.DatabaseUnreachable as exc:
        return scripting.fail(str(exc), scripting.EXIT_UNREACHABLE)
    except MONGO_DOWN_ERRORS as exc:
        return scripting.fail(f"the database stopped answering during {args.command} ({type(exc).__name__}); "
                              "rerun it: every command is idempotent", scripting.EXIT_UNREACHABLE)
    except PyMongoError as exc:
        return scripting.fail(f"{args.command} failed: {type(exc).__name__}: {exc}", scripting.EXIT_FAILED)
    finally:
        if emitter:
            realtime.uninstall_external_emitter()
    print_result(args, result)
    return code
