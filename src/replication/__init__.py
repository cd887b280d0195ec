"""Continuous replication of the app's SQLite database with Litestream (issue 8).

The app's start-up uses three names::

    config = replica_config(settings)          # None when SQLITE_REPLICA_URL is unset
    replication = Replication(config, db_path)
    replication.start()                        # election, restore, replication
    replication.wait_ready(timeout)            # True once the database may be opened
    replication.status().as_dict()             # for /config/database and /
    replication.stop()                         # at shutdown, after the engine is closed

`doctor_check(config, timeout)` reads the replica without writing to it.
"""

from src.replication.config import ReplicaConfig, replica_config
from src.replication.doctor import DoctorResult, doctor_check
from src.replication.restore import RestoreResult
from src.replication.service import Replication
from src.replication.status import ReplicationStatus

__all__ = [
    "DoctorResult",
    "ReplicaConfig",
    "Replication",
    "ReplicationStatus",
    "RestoreResult",
    "doctor_check",
    "replica_config",
]
