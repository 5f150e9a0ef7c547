"""The shapes of the API: every request body, query and response, declared once.

The routes validate with these and the OpenAPI document is written from them, so the two can
not drift apart.
"""

from __future__ import annotations

from .schema import Field, Schema, page_of

UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SHA256_PATTERN = r"[0-9a-f]{64}"

# -- building blocks ---------------------------------------------------------------------------

USER_ID = Field("string", "letter first, then letters, digits, '_', '-', '.' or '@'; 3-64 characters",
                pattern=r"[A-Za-z][A-Za-z0-9_.@-]{2,63}")
PROJECT_ID = Field("string", "letter first, then letters, digits, '_' or '-'; 3-64 characters",
                   pattern=r"[A-Za-z][A-Za-z0-9_-]{2,63}")
NAME = Field("string", "1-128 printable characters", pattern=r"[^\x00-\x1f\x7f]{1,128}")
PASSWORD = Field("string", "8-1024 characters", min_length=8, max_length=1024)
ROLE = Field("string", "'member' sees their own resources of the project; 'project_admin' sees all of them "
             "and manages its members", enum=("member", "project_admin"))
ID = Field("string", "a resource id (UUID)", pattern=UUID_PATTERN)
SHA256 = Field("string", "lower-case hex SHA-256", pattern=SHA256_PATTERN)
TIME = Field("string", "ISO 8601 UTC time", format="date-time")
OPTIONAL_TIME = Field("string", "ISO 8601 UTC time, null until reached", format="date-time", nullable=True)
LIMIT = Field("integer", "items per page", minimum=1, maximum=1000).optional(50)
OFFSET = Field("integer", "items to skip", minimum=0, maximum=10**9).optional(0)

PAGE_QUERY = Schema("PageQuery", {"limit": LIMIT, "offset": OFFSET})
EMPTY = Schema("Empty", {}, "no content")

# -- tokens and users --------------------------------------------------------------------------

LOGIN = Schema("Login", {
    "user_id": USER_ID,
    "password": Field("string", "the user's password", min_length=1, max_length=1024),
    "project_id": PROJECT_ID.optional(),
}, "credentials; without project_id the token works in the user's first project (admins: none)")

SWITCH = Schema("SwitchProject", {"project_id": Field("string", "a project of yours; null: none (admins)",
                                                     pattern=PROJECT_ID.pattern, nullable=True)},
                "a new token for another project")

MEMBERSHIP_REF = Schema("ProjectRole", {"project_id": PROJECT_ID, "role": ROLE})

ME = Schema("Me", {
    "user_id": USER_ID, "name": NAME, "is_admin": Field("boolean"),
    "project_id": Field("string", "the token's project", nullable=True),
    "role": Field("string", "what the token may do in its project", enum=("admin", "project_admin", "member", "user")),
    "projects": Field("array", items=MEMBERSHIP_REF),
}, "the caller, as the server sees them now")

TOKEN = Schema("Token", {
    "token": Field("string", "send as 'Authorization: Bearer <token>'"),
    "token_type": Field("string", enum=("Bearer",)),
    "expires_at": TIME,
    **ME.fields,
})

USER_CREATE = Schema("UserCreate", {
    "id": USER_ID, "name": NAME, "password": PASSWORD, "is_admin": Field("boolean").optional(False)})
USER_UPDATE = Schema("UserUpdate", {
    "name": NAME.optional(), "password": PASSWORD.optional(), "is_admin": Field("boolean").optional()},
    "fields to change; absent fields stay")
USER = Schema("User", {
    "id": USER_ID, "name": NAME, "is_admin": Field("boolean"), "creator_id": Field("string", nullable=True),
    "created_at": TIME, "projects": Field("array", items=MEMBERSHIP_REF)})

PROJECT_CREATE = Schema("ProjectCreate", {"id": PROJECT_ID, "name": NAME})
PROJECT = Schema("Project", {"id": PROJECT_ID, "name": NAME, "creator_id": Field("string", nullable=True),
                             "created_at": TIME})
MEMBER_SET = Schema("MemberSet", {"role": ROLE})
MEMBER = Schema("Member", {"user_id": USER_ID, "project_id": PROJECT_ID, "role": ROLE, "created_at": TIME})

# -- resources ---------------------------------------------------------------------------------

_OWNED = {"id": ID, "name": NAME, "project_id": PROJECT_ID, "owner_id": USER_ID, "created_at": TIME}

CLUSTER_CREATE = Schema("ClusterCreate", {
    "name": NAME,
    "template": Field("string", "template text (docs/template_format.md); or give checkpoint_id",
                      min_length=1, max_length=1 << 20).optional(),
    "checkpoint_id": ID.optional(),
    "seed": Field("integer", "seed of every random choice", minimum=0, maximum=2**53 - 1).optional(0),
}, "a new cluster from template text or from a checkpoint")
CLUSTER = Schema("Cluster", {
    **_OWNED, "template": Field("string"), "seed": Field("integer"), "n_inputs": Field("integer"),
    "n_outputs": Field("integer"), "busy": Field("boolean", "a task is queued or running"),
    "stats": Field("object", "HanamiCluster.stats(): synapses, sections, bytes, steps, bricks (GET only)").optional(),
})
RESTORE = Schema("Restore", {"checkpoint_id": ID})

DATASET_QUERY = Schema("DatasetUpload", {
    "name": NAME,
    "type": Field("string", "mnist: parts images and labels (IDX files); csv: part table", enum=("mnist", "csv")),
    "images_sha256": SHA256.optional(), "labels_sha256": SHA256.optional(), "table_sha256": SHA256.optional(),
}, "the SHA-256 of every part of the multipart body must be declared")
DATASET = Schema("Dataset", {
    **_OWNED, "type": Field("string", enum=("mnist", "csv")), "samples": Field("integer", "images, or table lines"),
    "inputs": Field("integer", "values per sample (mnist) or columns (csv)"),
    "outputs": Field("integer", "classes (mnist); 0 for csv"),
    "columns": Field("array", "csv column names", items=Field("string")),
    "size_bytes": Field("integer"), "sha256": Field("string", "SHA-256 over the parts' declared SHA-256s"),
})

TASK_CREATE = Schema("TaskCreate", {
    "name": NAME.optional("task"), "type": Field("string", "train: learn the dataset; request: predict it",
                                                 enum=("train", "request")),
    "cluster_id": ID, "dataset_id": ID,
    "epochs": Field("integer", "passes over the dataset (train only)", minimum=1, maximum=1000).optional(1),
})
TASK = Schema("Task", {
    **_OWNED, "type": Field("string", enum=("train", "request")), "cluster_id": ID, "dataset_id": ID,
    "epochs": Field("integer"),
    "state": Field("string", enum=("queued", "running", "finished", "failed", "cancelled")),
    "progress": Field("number", "0..1", minimum=0, maximum=1),
    "samples_done": Field("integer"), "samples_total": Field("integer", "0 until the task starts"),
    "error": Field("string", "why the task failed", nullable=True),
    "started_at": OPTIONAL_TIME, "finished_at": OPTIONAL_TIME,
    "result_id": Field("string", "the result of a finished request task", nullable=True),
})
TASK_QUERY = Schema("TaskQuery", {
    "cluster_id": ID.optional(), "state": TASK.fields["state"].optional(), "limit": LIMIT, "offset": OFFSET})

RESULT = Schema("Result", {
    **_OWNED, "task_id": ID, "cluster_id": ID, "dataset_id": ID, "samples": Field("integer"),
    "outputs": Field("integer", "output values per sample")})
RESULT_DATA = Schema("ResultData", {
    "result_id": ID, "offset": Field("integer"), "limit": Field("integer"), "total": Field("integer"),
    "classes": Field("array", "arg-max output per sample", items=Field("integer")),
    "outputs": Field("array", "output values per sample", items=Field("array", items=Field("number"))),
})
ACCURACY_QUERY = Schema("AccuracyQuery", {"dataset_id": ID})
ACCURACY = Schema("Accuracy", {
    "result_id": ID, "dataset_id": ID, "correct": Field("integer"), "total": Field("integer"),
    "accuracy": Field("number", "percent of samples whose arg-max output is the label")})

CHECKPOINT_CREATE = Schema("CheckpointCreate", {"name": NAME})
CHECKPOINT_QUERY = Schema("CheckpointUpload", {"name": NAME, "sha256": SHA256},
                          "the body is the .safetensors file; sha256 is its SHA-256")
CHECKPOINT_LIST_QUERY = Schema("CheckpointQuery", {"cluster_id": ID.optional(), "limit": LIMIT, "offset": OFFSET})
CHECKPOINT = Schema("Checkpoint", {
    **_OWNED, "cluster_id": Field("string", "the cluster it was saved from; null for an upload", nullable=True),
    "size_bytes": Field("integer"), "sha256": Field("string", "SHA-256 of the file"),
    "synapses": Field("integer")})

# -- logs, system, health ----------------------------------------------------------------------

LOG_QUERY = Schema("LogQuery", {"user_id": USER_ID.optional(), "limit": LIMIT, "offset": OFFSET})
AUDIT_ENTRY = Schema("AuditEntry", {
    "id": Field("integer"), "at": TIME, "user_id": Field("string", nullable=True), "method": Field("string"),
    "path": Field("string"), "status": Field("integer")})
ERROR_ENTRY = Schema("ErrorEntry", {
    "id": Field("integer"), "at": TIME, "user_id": Field("string", nullable=True), "method": Field("string"),
    "path": Field("string"), "message": Field("string")})
SYSTEM = Schema("System", {
    "hostname": Field("string"), "version": Field("string"), "python": Field("string"), "torch": Field("string"),
    "uptime_s": Field("number"), "threads": Field("object"), "devices": Field("array", items=Field("object")),
    "clusters_loaded": Field("integer"), "queued": Field("integer", "tasks waiting"),
    "busy_clusters": Field("integer", "clusters with a running task")})
HEALTH = Schema("Health", {"status": Field("string", enum=("ok",))})
ERROR = Schema("Error", {"error": Field("object", schema=Schema("ErrorDetail", {
    "code": Field("string", "machine-readable, e.g. not_found"),
    "message": Field("string", "what went wrong and what to do")}))})

PAGES = {schema.name: page_of(schema) for schema in (USER, PROJECT, MEMBER, CLUSTER, DATASET, TASK, RESULT,
                                                     CHECKPOINT, AUDIT_ENTRY, ERROR_ENTRY)}
