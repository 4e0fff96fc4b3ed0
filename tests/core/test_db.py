import pytest
from pymongo import ASCENDING
from pymongo.errors import BulkWriteError

from core.db import INDEXES, OBSOLETE_INDEXES, ensure_indexes, insert_many_new


def test_obsolete_flight_indexes_are_dropped_and_the_declared_ones_kept(services):
    db = services.db
    db.flights.create_index([("flight_number", ASCENDING)])
    assert "flight_number_1" in db.flights.index_information()
    ensure_indexes(db)
    present = set(db.flights.index_information())
    assert not present.intersection(OBSOLETE_INDEXES["flights"])
    assert {"origin_1_departure_ts_1", "destination_1_departure_ts_1"} <= present
    assert len(present) == len(INDEXES["flights"]) + 1  # and _id_


def test_insert_many_new_tells_which_docs_were_stored_already(services):
    collection = services.db["test_insert_many_new"]
    collection.drop()
    collection.insert_one({"_id": "b", "n": 0})
    refused = insert_many_new(collection, [{"_id": "a"}, {"_id": "b", "n": 1}, {"_id": "c"}])
    assert refused == [1]
    assert collection.find_one({"_id": "b"}) == {"_id": "b", "n": 0}
    assert collection.count_documents({}) == 3
    assert insert_many_new(collection, []) == []
    assert insert_many_new(collection, [{"_id": "d"}]) == []


def test_insert_many_new_raises_other_write_errors(services):
    db = services.db
    db.drop_collection("test_insert_many_validated")
    collection = db.create_collection(
        "test_insert_many_validated", validator={"$jsonSchema": {"required": ["x"]}}
    )
    collection.insert_one({"_id": "b", "x": 1})
    # A document the validator refuses, next to a duplicate: raised all the same.
    with pytest.raises(BulkWriteError) as caught:
        insert_many_new(collection, [{"_id": "b", "x": 1}, {"_id": "e"}])
    assert {e["code"] for e in caught.value.details["writeErrors"]} == {11000, 121}


def test_acknowledged_writes_survive_the_embedded_server_killed(tmp_path, settings):
    """With the settings' write concern (journal=true), a write the embedded
    server acknowledged is there after a SIGKILL and a restart, even one made
    a moment before it (without it, the last seconds of writes are lost)."""
    from core.db import connect_mongo, database
    from core.settings import replace
    from tools.processes import start_secantus, stop

    proc, uri = start_secantus(tmp_path / "db", tmp_path / "log")
    port = int(uri.split(":")[2].split("/")[0])
    own = replace(settings, MONGODB_URI=uri)
    try:
        client = connect_mongo(own)
        db = database(client)
        db.kept.insert_one({"_id": "before"})
        db.kept.insert_many([{"_id": n} for n in range(50)])
        db.kept.update_one({"_id": "before"}, {"$set": {"changed": True}})
        proc.kill()
        proc.wait(10)
        client.close()
        proc, _ = start_secantus(tmp_path / "db", tmp_path / "log", port=port)
        client = connect_mongo(own)
        db = database(client)
        assert db.kept.count_documents({}) == 51
        assert db.kept.find_one({"_id": "before"}) == {"_id": "before", "changed": True}
        client.close()
    finally:
        stop(proc)
