"""scripts/maintenance.py: each subcommand on a shared store, what it changes, and that --dry-run changes nothing."""
import json
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from bson import ObjectId

from allynet import maintenance, realtime, seeding
from allynet.fields import iso
from tests.helpers import events_named, load_script
from allynet.db import is_embedded

ROOT = Path(__file__).resolve().parent.parent
CENTRE = {"lat": 45.764, "lng": 4.8357}


@pytest.fixture(scope="module")
def script():
    return load_script("maintenance")


@pytest.fixture
def run(script, app, db, capsys):
    """Run the maintenance script in-process on the test's store: (exit code, stdout)."""
    def invoke(*argv):
        capsys.readouterr()
        code = script.main(list(argv) + ["--no-progress"], db=db, config=app.config)
        return code, capsys.readouterr().out

    return invoke


def snapshot(db):
    """Every document of every collection (to prove a dry run changed nothing)."""
    return {name: sorted(map(repr, db[name].find())) for name in db.list_collection_names()}


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- ensure-indexes --------------------------------------------------------------------------


def test_ensure_indexes_creates_missing_reports_conflicts_and_is_idempotent(run, db):
    db.reports.drop_index("status_created")
    db.skills.drop_index("owner")
    code, out = run("ensure-indexes", "--dry-run")
    assert code == 0 and "missing (would create): 2" in out
    assert "status_created" not in db.reports.index_information()
    code, out = run("ensure-indexes")
    assert code == 0 and "created: 2" in out and "reports.status_created" in out
    assert "status_created" in db.reports.index_information() and "owner" in db.skills.index_information()
    code, out = run("ensure-indexes")
    assert code == 0 and "created: 0" in out and "conflicts: 0" in out
    # Same name, other keys: reported and left alone, exit 1.
    db.routes.drop_index("owner_created")
    db.routes.create_index([("name", 1)], name="owner_created")
    code, out = run("ensure-indexes")
    assert code == 1 and "conflicts: routes.owner_created" in out
    assert db.routes.index_information()["owner_created"]["key"] == [("name", 1)]


# --- expire ----------------------------------------------------------------------------------


def test_expire_cancels_stale_sos_like_the_owner_would(run, client, db, make_user, clock):
    owner = make_user(location=(CENTRE["lat"], CENTRE["lng"]))
    fresh_owner = make_user()
    created = client.post("/api/v1/emergencies", json={"type": "medical", "location": CENTRE},
                          headers={**owner.headers, "Idempotency-Key": "k1"})
    assert created.status_code == 201
    sos_id = created.get_json()["data"]["emergency"]["id"]
    clock.advance(hours=20)
    recent = client.post("/api/v1/emergencies", json={"type": "fire", "location": CENTRE},
                         headers={**fresh_owner.headers, "Idempotency-Key": "k2"})
    recent_id = recent.get_json()["data"]["emergency"]["id"]
    clock.advance(hours=5)  # the first is 25 h old (SOS_MAX_HOURS 24), the second 5 h

    before = snapshot(db)
    code, out = run("expire", "--dry-run")
    assert code == 0 and "sos cancelled: 1" in out and out.startswith("dry run")
    assert snapshot(db) == before

    code, out = run("expire")
    assert code == 0 and "sos cancelled: 1" in out
    body = client.get(f"/api/v1/emergencies/{sos_id}", headers=owner.headers).get_json()["data"]
    assert body["status"] == "cancelled"
    assert body["timeline"][-1]["status"] == "cancelled" and body["timeline"][-1]["by"] is None
    stored = db.emergencies.find_one({"_id": ObjectId(sos_id)})
    assert stored["is_open"] is False
    assert db.users.find_one({"_id": owner["_id"]})["active_emergency_id"] is None
    assert db.audit_log.find_one({"action": "emergency.expire", "target_id": ObjectId(sos_id)}) is not None
    # The owner may open a new SOS at once; the recent one is untouched.
    again = client.post("/api/v1/emergencies", json={"type": "medical", "location": CENTRE},
                        headers={**owner.headers, "Idempotency-Key": "k3"})
    assert again.status_code == 201
    assert db.emergencies.find_one({"_id": ObjectId(recent_id)})["status"] == "active"
    code, out = run("expire")
    assert "sos cancelled: 0" in out


def test_expire_ends_idle_parties_only(run, client, db, make_user, clock):
    idle_leader, busy_leader, rider = make_user(), make_user(), make_user()
    idle = client.post("/api/v1/parties", json={"name": "Forgotten ride"}, headers=idle_leader.headers)
    assert idle.status_code == 201
    idle_id = idle.get_json()["data"]["id"]
    invite = idle.get_json()["data"]["invite_code"]
    assert client.post("/api/v1/parties/join", json={"invite_code": invite}, headers=rider.headers).status_code == 200
    busy = client.post("/api/v1/parties", json={"name": "Ongoing"}, headers=busy_leader.headers)
    busy_id = busy.get_json()["data"]["id"]
    clock.advance(hours=13)  # PARTY_IDLE_HOURS is 12
    db.party_messages.insert_one({"party_id": ObjectId(busy_id), "user_id": busy_leader["_id"], "text": "still here",
                                  "ts": clock.current})

    before = snapshot(db)
    code, out = run("expire", "--dry-run")
    assert code == 0 and "parties ended: 1" in out
    assert snapshot(db) == before

    code, out = run("expire")
    assert "parties ended: 1" in out
    party = db.parties.find_one({"_id": ObjectId(idle_id)})
    assert party["is_active"] is False and party["ended_at"] == clock.current
    assert db.party_members.count_documents({"party_id": ObjectId(idle_id), "active": True}) == 0
    assert db.parties.find_one({"_id": ObjectId(busy_id)})["is_active"] is True
    # Its invite code no longer works; the rider is free to start a new ride.
    late = make_user()
    assert client.post("/api/v1/parties/join", json={"invite_code": invite}, headers=late.headers).status_code == 404
    assert client.post("/api/v1/parties", json={"name": "New"}, headers=rider.headers).status_code == 201
    assert "parties ended: 0" in run("expire")[1]


def test_expire_removes_expired_reports_votes_and_alerts(run, client, db, make_user, clock):
    reporter, voter = make_user(), make_user()
    moderator = make_user(role="moderator")
    police = client.post("/api/v1/reports", json={"type": "police", "location": CENTRE}, headers=reporter.headers)
    hazard = client.post("/api/v1/reports", json={"type": "hazard", "location": CENTRE}, headers=reporter.headers)
    police_id, hazard_id = police.get_json()["data"]["id"], hazard.get_json()["data"]["id"]
    assert client.post(f"/api/v1/reports/{police_id}/vote", json={"value": "down"},
                       headers=voter.headers).status_code == 200
    alert = client.post("/api/v1/alerts", headers=moderator.headers, json={
        "type": "weather", "location": CENTRE, "description": "Storm",
        "expires_at": (clock.current + timedelta(hours=1)).isoformat() + "Z"})
    assert alert.status_code == 201
    clock.advance(hours=3)  # police (2 h) and the alert (1 h) are past; the hazard (24 h) is not

    before = snapshot(db)
    code, out = run("expire", "--dry-run")
    assert "reports removed: 1" in out and "alerts removed: 1" in out
    assert snapshot(db) == before

    code, out = run("expire")
    assert code == 0 and "reports removed: 1" in out and "report votes removed: 1" in out
    assert db.reports.find_one({"_id": ObjectId(police_id)}) is None
    assert db.report_votes.count_documents({"report_id": ObjectId(police_id)}) == 0
    assert db.alerts.count_documents({}) == 0
    assert client.get(f"/api/v1/reports/{hazard_id}", headers=voter.headers).status_code == 200
    assert "reports removed: 0" in run("expire")[1]


def test_expire_removes_votes_left_by_reports_the_ttl_monitor_deleted(run, client, db, make_user):
    reporter = make_user()
    voters = [make_user() for _ in range(3)]
    ids = [client.post("/api/v1/reports", json={"type": "hazard", "location": CENTRE},
                       headers=reporter.headers).get_json()["data"]["id"] for _ in range(2)]
    for report_id in ids:
        for voter in voters:
            assert client.post(f"/api/v1/reports/{report_id}/vote", json={"value": "up"},
                               headers=voter.headers).status_code == 200
    gone, kept = ObjectId(ids[0]), ObjectId(ids[1])
    db.reports.delete_one({"_id": gone})  # what MongoDB's TTL monitor does at expires_at: votes stay

    before = snapshot(db)
    code, out = run("expire", "--dry-run")
    assert code == 0 and "orphan votes removed: 3" in out and "reports removed: 0" in out
    assert snapshot(db) == before
    code, out = run("expire", "--batch-size", "1")
    assert code == 0 and "orphan votes removed: 3" in out
    assert db.report_votes.count_documents({"report_id": gone}) == 0
    assert db.report_votes.count_documents({"report_id": kept}) == 3
    assert "orphan votes removed: 0" in run("expire")[1]


# --- purge-trails ----------------------------------------------------------------------------


def test_purge_trails_in_batches(run, db, clock, capsys):
    party_id = ObjectId()
    now = clock.current
    old = [{"party_id": party_id, "user_id": ObjectId(), "ts": now - timedelta(days=10, minutes=n),
            "location": {"type": "Point", "coordinates": [4.83, 45.76]}} for n in range(7)]
    new = [{"party_id": party_id, "user_id": ObjectId(), "ts": now - timedelta(days=2, minutes=n),
            "location": {"type": "Point", "coordinates": [4.83, 45.76]}} for n in range(3)]
    db.trail_points.insert_many(old + new)

    code, out = run("purge-trails", "--older-than", "7", "--dry-run")
    assert code == 0 and "trail points removed: 7" in out
    assert db.trail_points.count_documents({}) == 10

    deletes = []
    original = type(db.trail_points).delete_many

    def spy(self, query, *args, **kwargs):
        deletes.append(query)
        return original(self, query, *args, **kwargs)

    type(db.trail_points).delete_many = spy
    try:
        code, out = run("purge-trails", "--older-than", "7", "--batch-size", "3")
    finally:
        type(db.trail_points).delete_many = original
    assert code == 0 and "trail points removed: 7" in out
    assert len(deletes) == 3  # 3 + 3 + 1, never one huge delete
    assert sorted(doc["ts"] for doc in db.trail_points.find()) == sorted(doc["ts"] for doc in new)
    assert "trail points removed: 0" in run("purge-trails", "--older-than", "7")[1]
    # Without --older-than: TRAIL_RETENTION_DAYS (30) keeps the rest.
    assert "trail points removed: 0" in run("purge-trails")[1]
    with pytest.raises(SystemExit) as exc:
        run("purge-trails", "--older-than", "-1")
    assert exc.value.code == 2


# --- recompute-trust -------------------------------------------------------------------------


def test_recompute_trust_rebuilds_scores_from_their_sources(run, client, db, make_user):
    owner, helper, reporter = make_user(), make_user(is_helper=True), make_user()
    moderator = make_user(role="moderator")
    request = client.post("/api/v1/help-requests", headers=owner.headers, json={
        "title": "Flat tyre", "description": "Need a pump", "category": "repairs", "location": CENTRE})
    request_id = request.get_json()["data"]["id"]
    offer = client.post(f"/api/v1/help-requests/{request_id}/offers", json={"message": "On my way"},
                        headers=helper.headers).get_json()["data"]
    client.post(f"/api/v1/help-requests/{request_id}/accept", json={"offer_id": offer["id"]}, headers=owner.headers)
    assert client.post(f"/api/v1/help-requests/{request_id}/complete", headers=owner.headers).status_code == 200
    camera = client.post("/api/v1/reports", json={"type": "speed_camera", "location": CENTRE},
                         headers=reporter.headers).get_json()["data"]
    hazard = client.post("/api/v1/reports", json={"type": "hazard", "location": CENTRE},
                         headers=reporter.headers).get_json()["data"]
    client.post(f"/api/v1/reports/{camera['id']}/moderate", json={"action": "approve"}, headers=moderator.headers)
    client.post(f"/api/v1/reports/{hazard['id']}/moderate", json={"action": "reject"}, headers=moderator.headers)
    live = {user["_id"]: db.users.find_one({"_id": user["_id"]})["trust_score"] for user in (helper, reporter)}
    assert live == {helper["_id"]: 53.0, reporter["_id"]: 47.0}  # +3 help; +2 confirmed -5 rejected

    # Scores drift (a bug, a restore, a hand edit): the rebuild puts back what the sources say.
    db.users.update_many({}, {"$set": {"trust_score": 99.0}, "$unset": {"trust_events": ""}})
    before = snapshot(db)
    code, out = run("recompute-trust", "--dry-run")
    assert code == 0 and "users changed: 4" in out
    assert snapshot(db) == before

    code, out = run("recompute-trust", "--batch-size", "2")
    assert code == 0 and "users scanned: 4" in out and "users changed: 4" in out
    assert {user["_id"]: user["trust_score"] for user in db.users.find()} == {
        owner["_id"]: 50.0, helper["_id"]: 53.0, reporter["_id"]: 47.0, moderator["_id"]: 50.0}
    assert db.users.find_one({"_id": reporter["_id"]})["trust_events"] == {
        "report_confirmed": 1, "report_rejected": 1}
    assert "users changed: 0" in run("recompute-trust")[1]
    public = client.get(f"/api/v1/users/{helper.id}", headers=owner.headers).get_json()["data"]
    assert public["trust_score"] == 53.0


def test_recompute_trust_leaves_a_user_whose_events_moved_meanwhile(db, make_user):
    user = make_user()
    db.users.update_one({"_id": user["_id"]}, {"$set": {"trust_score": 80.0}})
    counts = maintenance.trust_event_counts(db=db)
    # An event lands between the read and the write: the compare-and-set on trust_events refuses.
    updates = [({"_id": user["_id"], "trust_events": None}, {"$set": {"trust_score": 50.0}})]
    db.users.update_one({"_id": user["_id"]}, {"$set": {"trust_events": {"help_completed": 1}}})
    assert maintenance.update_batch(db.users, updates) == 0
    assert counts.get(user["_id"]) is None
    assert db.users.find_one({"_id": user["_id"]})["trust_score"] == 80.0


# --- stats -----------------------------------------------------------------------------------


def test_stats_counts_per_collection_and_status(run, app, db):
    seeding.seed(db=db, config=app.config, show_progress=False,
                 plan=seeding.SeedPlan(users=60, fast_hashes=True, sos=2, reports=20, parties=2))
    before = snapshot(db)
    code, out = run("stats", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["users"]["count"] == db.users.count_documents({})
    assert result["users"]["by_role"] == {"admin": 1, "moderator": 1, "user": db.users.count_documents({}) - 2}
    assert result["emergencies"]["by_status"] == {
        status: db.emergencies.count_documents({"status": status}) for status in db.emergencies.distinct("status")}
    assert sum(result["reports"]["by_status"].values()) == result["reports"]["count"] == 20
    assert result["parties"]["by_is_active"]["True"] >= 1
    if is_embedded(db.client):
        assert result["users"]["index_sizes"] is None  # the embedded store reports none
    else:
        assert "email_unique" in result["users"]["index_sizes"]
    code, out = run("stats")
    assert code == 0 and "users" in out and "role" not in out and "admin=1" in out
    assert snapshot(db) == before


# --- outages, help, flask ---------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["stats"], ["expire"], ["ensure-indexes"], ["purge-trails"], ["recompute-trust"]])
def test_unreachable_database_is_a_clear_exit_3(script, monkeypatch, capsys, argv):
    monkeypatch.delenv("ALLYNET_ENV", raising=False)
    monkeypatch.setenv("MONGO_URI", f"mongodb://127.0.0.1:{closed_port()}/?directConnection=true")
    monkeypatch.setenv("MONGO_SERVER_SELECTION_TIMEOUT_MS", "200")
    assert script.main(argv) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach MongoDB at mongodb://127.0.0.1:") and "MONGO_URI" in err


def test_seed_exits_3_when_the_database_is_unreachable(monkeypatch, capsys):
    monkeypatch.delenv("ALLYNET_ENV", raising=False)
    monkeypatch.setenv("MONGO_SERVER_SELECTION_TIMEOUT_MS", "200")
    uri = f"mongodb://admin:s3cret@127.0.0.1:{closed_port()}/?directConnection=true"
    assert load_script("seed").main(["--users", "5", "--fast-hashes", "--mongo-uri", uri]) == 3
    err = capsys.readouterr().err
    assert "cannot reach MongoDB" in err and "s3cret" not in err  # the password never reaches a log


def test_help_runs_as_a_script():
    outputs = []
    for argv in (["--help"], ["expire", "--help"]):
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / "maintenance.py"), *argv],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0
        outputs.append(result.stdout)
    assert all(name in outputs[0] for name in ("ensure-indexes", "expire", "purge-trails", "recompute-trust",
                                               "stats", "ALLYNET_DEMO", "MONGO_URI"))
    assert "--dry-run" in outputs[1] and "PARTY_IDLE_HOURS" in outputs[1]


def test_flask_commands_share_the_scripts(app, db, make_user):
    runner = app.test_cli_runner()
    seeded = runner.invoke(args=["seed", "--users", "20", "--fast-hashes", "--no-progress", "--sos", "0"])
    assert seeded.exit_code == 0, seeded.output
    assert "admin@allynet.example" in seeded.output
    assert db.users.count_documents({}) == 20 + len(seeding.DEMO_ACCOUNTS)
    stats = runner.invoke(args=["maintenance", "stats", "--json"])
    assert stats.exit_code == 0
    assert json.loads(stats.output[stats.output.index("{"):])["users"]["count"] == 25
    helped = runner.invoke(args=["maintenance", "--help"])
    assert helped.exit_code == 0 and "purge-trails" in helped.output



def test_expire_tells_an_idle_partys_riders_and_closes_its_room(run, app, client, make_user, socket_client, clock):
    """As `flask maintenance expire` runs it: in the app, whose Socket.IO server the riders are on."""
    leader, rider, outsider = make_user(), make_user(), make_user()
    party = client.post("/api/v1/parties", json={"name": "Forgotten ride"}, headers=leader.headers).get_json()["data"]
    assert client.post("/api/v1/parties/join", json={"invite_code": party["invite_code"]},
                       headers=rider.headers).status_code == 200
    sockets = {"leader": socket_client(leader), "rider": socket_client(rider), "outsider": socket_client(outsider)}
    for sio in sockets.values():
        sio.get_received()
    clock.advance(hours=13)  # PARTY_IDLE_HOURS is 12

    with app.app_context():
        assert "parties ended: 1" in run("expire")[1]

    for name in ("leader", "rider"):
        assert events_named(sockets[name], "party:ended") == [{"party_id": party["id"],
                                                               "ended_at": iso(clock.current)}]
    assert events_named(sockets["outsider"], "party:ended") == []
    with app.app_context():  # the room is closed: what is sent to it reaches no one
        realtime.emit_to_room(realtime.party_room(party["id"]), "party:message", {"text": "anyone?"})
    assert all(events_named(sio, "party:message") == [] for sio in sockets.values())
