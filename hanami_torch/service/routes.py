"""Every endpoint of the API: its declaration and its (thin) handler.

A handler takes the validated inputs from :class:`~.api.Call`, calls one method of
:class:`~.core.Service` and returns what it returns; the OpenAPI document is written from
:data:`ROUTES`.
"""

from __future__ import annotations

from aiohttp import web

from . import declarations as d
from .api import METRICS_KEY, OPENAPI_KEY, Call, Route
from .directio import FRAME_DOC, direct_io
from .errors import BadRequest, Unprocessable


def _page(call: Call) -> tuple[int, int]:
    return call.query["limit"], call.query["offset"]


# -- tokens -----------------------------------------------------------------------------------------

async def create_token(call: Call):
    body = call.body
    return call.service.login(body["user_id"], body["password"], body["project_id"], call.request.remote or "-")


async def switch_project(call: Call):
    return call.service.switch_project(call.principal, call.body["project_id"])


async def delete_token(call: Call):
    call.service.logout(call.principal)


async def get_me(call: Call):
    return call.service.me(call.principal)


# -- users ------------------------------------------------------------------------------------------

async def create_user(call: Call):
    b = call.body
    return call.service.create_user(call.principal, b["id"], b["name"], b["password"], b["is_admin"])


async def list_users(call: Call):
    return call.service.list_users(*_page(call))


async def get_user(call: Call):
    return call.service.get_user(call.params["user_id"])


async def update_user(call: Call):
    b = call.body
    return call.service.update_user(call.principal, call.params["user_id"], b["name"], b["password"], b["is_admin"])


async def delete_user(call: Call):
    call.service.delete_user(call.principal, call.params["user_id"])


# -- projects and members ---------------------------------------------------------------------------

async def create_project(call: Call):
    return call.service.create_project(call.principal, call.body["id"], call.body["name"])


async def list_projects(call: Call):
    return call.service.list_projects(call.principal, *_page(call))


async def get_project(call: Call):
    return call.service.get_project(call.principal, call.params["project_id"])


async def delete_project(call: Call):
    call.service.delete_project(call.params["project_id"])


async def set_member(call: Call):
    p = call.params
    return call.service.set_member(call.principal, p["project_id"], p["user_id"], call.body["role"])


async def list_members(call: Call):
    return call.service.list_members(call.principal, call.params["project_id"], *_page(call))


async def remove_member(call: Call):
    call.service.remove_member(call.principal, call.params["project_id"], call.params["user_id"])


# -- clusters ---------------------------------------------------------------------------------------

async def create_cluster(call: Call):
    b = call.body
    return await call.service.create_cluster(call.principal, b["name"], b["template"], b["checkpoint_id"], b["seed"])


async def list_clusters(call: Call):
    return call.service.list_clusters(call.principal, *_page(call))


async def get_cluster(call: Call):
    return await call.service.get_cluster(call.principal, call.params["cluster_id"])


async def delete_cluster(call: Call):
    await call.service.delete_cluster(call.principal, call.params["cluster_id"])


async def save_checkpoint(call: Call):
    return await call.service.save_checkpoint(call.principal, call.params["cluster_id"], call.body["name"])


async def restore_checkpoint(call: Call):
    return await call.service.restore_checkpoint(call.principal, call.params["cluster_id"], call.body["checkpoint_id"])


# -- datasets ---------------------------------------------------------------------------------------

async def upload_dataset(call: Call):
    q, request = call.query, call.request
    parts = {"mnist": ("images", "labels"), "csv": ("table",)}[q["type"]]
    declared = {part: q[f"{part}_sha256"] for part in parts}
    missing = [f"{part}_sha256" for part, digest in declared.items() if digest is None]
    extra = [f"{part}_sha256" for part in ("images", "labels", "table") if part not in parts and q[f"{part}_sha256"]]
    if missing or extra:
        raise Unprocessable(f"a {q['type']} upload declares exactly {', '.join(p + '_sha256' for p in parts)}"
                            f"{'; missing ' + ', '.join(missing) if missing else ''}"
                            f"{'; not expected ' + ', '.join(extra) if extra else ''}")
    if not request.content_type.startswith("multipart/form-data"):
        raise BadRequest(f"send the files as multipart/form-data with the part(s) {', '.join(parts)}")
    call.service.check_dataset_name(call.principal, q["name"])
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError) as error:
        raise BadRequest(f"the multipart body cannot be read: {error}") from None
    return await call.service.upload_dataset(call.principal, q["name"], q["type"], declared, reader,
                                             request.content_length)


async def list_datasets(call: Call):
    return call.service.list_datasets(call.principal, *_page(call))


async def get_dataset(call: Call):
    return call.service.get_dataset(call.principal, call.params["dataset_id"])


async def delete_dataset(call: Call):
    call.service.delete_dataset(call.principal, call.params["dataset_id"])


# -- tasks ------------------------------------------------------------------------------------------

async def create_task(call: Call):
    b = call.body
    return call.service.create_task(call.principal, b["name"], b["type"], b["cluster_id"], b["dataset_id"], b["epochs"])


async def list_tasks(call: Call):
    q = call.query
    return call.service.list_tasks(call.principal, q["cluster_id"], q["state"], q["limit"], q["offset"])


async def get_task(call: Call):
    return call.service.get_task(call.principal, call.params["task_id"])


async def cancel_task(call: Call):
    return call.service.cancel_task(call.principal, call.params["task_id"])


async def delete_task(call: Call):
    call.service.delete_task(call.principal, call.params["task_id"])


# -- results ----------------------------------------------------------------------------------------

async def list_results(call: Call):
    return call.service.list_results(call.principal, *_page(call))


async def get_result(call: Call):
    return call.service.get_result(call.principal, call.params["result_id"])


async def get_result_data(call: Call):
    return call.service.result_data(call.principal, call.params["result_id"], *_page(call))


async def get_accuracy(call: Call):
    return await call.service.accuracy(call.principal, call.params["result_id"], call.query["dataset_id"])


async def delete_result(call: Call):
    call.service.delete_result(call.principal, call.params["result_id"])


# -- checkpoints ------------------------------------------------------------------------------------

async def upload_checkpoint(call: Call):
    request = call.request
    return await call.service.upload_checkpoint(call.principal, call.query["name"], call.query["sha256"],
                                                request.content, request.content_length)


async def list_checkpoints(call: Call):
    q = call.query
    return call.service.list_checkpoints(call.principal, q["cluster_id"], q["limit"], q["offset"])


async def get_checkpoint(call: Call):
    return call.service.get_checkpoint(call.principal, call.params["checkpoint_id"])


async def download_checkpoint(call: Call):
    path, row = call.service.checkpoint_file(call.principal, call.params["checkpoint_id"])
    return web.FileResponse(path, headers={
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'attachment; filename="{row["id"]}.safetensors"',
        "X-Content-SHA256": row["sha256"]})


async def delete_checkpoint(call: Call):
    call.service.delete_checkpoint(call.principal, call.params["checkpoint_id"])


# -- logs, system, health ---------------------------------------------------------------------------

async def audit_log(call: Call):
    q = call.query
    return call.service.audit_log(call.principal, q["user_id"], q["limit"], q["offset"])


async def error_log(call: Call):
    q = call.query
    return call.service.error_log(q["user_id"], q["limit"], q["offset"])


async def system(call: Call):
    return call.service.system()


async def health(call: Call):
    return {"status": "ok"}


async def metrics(call: Call):
    text = call.request.app[METRICS_KEY].text(call.service)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def openapi(call: Call):
    return call.request.app[OPENAPI_KEY]


# -- the table --------------------------------------------------------------------------------------

P_USER = {"user_id": d.USER_ID}
P_PROJECT = {"project_id": d.PROJECT_ID}
P_CLUSTER = {"cluster_id": d.ID}
P_DATASET = {"dataset_id": d.ID}
P_TASK = {"task_id": d.ID}
P_RESULT = {"result_id": d.ID}
P_CHECKPOINT = {"checkpoint_id": d.ID}

ROUTES: list[Route] = [
    Route("POST", "/v1/token", "create_token", create_token, "Log in: a token for a user (and a project)", "tokens",
          status=201, body=d.LOGIN, response=d.TOKEN, errors=(401, 429), auth=False),
    Route("PUT", "/v1/token", "switch_project", switch_project, "Switch project: a new token for another project",
          "tokens", body=d.SWITCH, response=d.TOKEN, errors=(404,)),
    Route("DELETE", "/v1/token", "delete_token", delete_token, "Log out: revoke this token at once", "tokens"),
    Route("GET", "/v1/me", "get_me", get_me, "The caller: user, project, role and projects", "tokens", response=d.ME),

    Route("POST", "/v1/users", "create_user", create_user, "Create a user", "users", status=201,
          body=d.USER_CREATE, response=d.USER, errors=(409,)),
    Route("GET", "/v1/users", "list_users", list_users, "List users", "users", query=d.PAGE_QUERY,
          response=d.PAGES["User"]),
    Route("GET", "/v1/users/{user_id}", "get_user", get_user, "Get a user", "users", params=P_USER, response=d.USER,
          errors=(404,)),
    Route("PATCH", "/v1/users/{user_id}", "update_user", update_user,
          "Change a user's name, password or admin flag (takes effect at once)", "users", params=P_USER,
          body=d.USER_UPDATE, response=d.USER, errors=(404, 409)),
    Route("DELETE", "/v1/users/{user_id}", "delete_user", delete_user,
          "Delete a user; their tokens stop working at once", "users", params=P_USER, errors=(404, 409)),

    Route("POST", "/v1/projects", "create_project", create_project, "Create a project", "projects", status=201,
          body=d.PROJECT_CREATE, response=d.PROJECT, errors=(409,)),
    Route("GET", "/v1/projects", "list_projects", list_projects, "List projects (yours, or all for an admin)",
          "projects", query=d.PAGE_QUERY, response=d.PAGES["Project"]),
    Route("GET", "/v1/projects/{project_id}", "get_project", get_project, "Get a project", "projects",
          params=P_PROJECT, response=d.PROJECT, errors=(404,)),
    Route("DELETE", "/v1/projects/{project_id}", "delete_project", delete_project,
          "Delete an empty project and its memberships", "projects", params=P_PROJECT, errors=(404, 409)),
    Route("PUT", "/v1/projects/{project_id}/members/{user_id}", "set_member", set_member,
          "Add a user to a project or change their role", "projects", params={**P_PROJECT, **P_USER},
          body=d.MEMBER_SET, response=d.MEMBER, errors=(404,)),
    Route("GET", "/v1/projects/{project_id}/members", "list_members", list_members, "List a project's members",
          "projects", params=P_PROJECT, query=d.PAGE_QUERY, response=d.PAGES["Member"], errors=(404,)),
    Route("DELETE", "/v1/projects/{project_id}/members/{user_id}", "remove_member", remove_member,
          "Remove a user from a project", "projects", params={**P_PROJECT, **P_USER}, errors=(404,)),

    Route("POST", "/v1/clusters", "create_cluster", create_cluster,
          "Create a cluster from template text or from a checkpoint", "clusters", status=201,
          body=d.CLUSTER_CREATE, response=d.CLUSTER, errors=(404, 409)),
    Route("GET", "/v1/clusters", "list_clusters", list_clusters, "List clusters", "clusters", query=d.PAGE_QUERY,
          response=d.PAGES["Cluster"]),
    Route("GET", "/v1/clusters/{cluster_id}", "get_cluster", get_cluster, "Get a cluster with live statistics",
          "clusters", params=P_CLUSTER, response=d.CLUSTER, errors=(404,)),
    Route("DELETE", "/v1/clusters/{cluster_id}", "delete_cluster", delete_cluster,
          "Delete a cluster: cancels its tasks and closes its sockets", "clusters", params=P_CLUSTER, errors=(404,)),
    Route("POST", "/v1/clusters/{cluster_id}/checkpoints", "save_checkpoint", save_checkpoint,
          "Save the cluster as a checkpoint", "checkpoints", status=201, params=P_CLUSTER,
          body=d.CHECKPOINT_CREATE, response=d.CHECKPOINT, errors=(404, 409)),
    Route("POST", "/v1/clusters/{cluster_id}/restore", "restore_checkpoint", restore_checkpoint,
          "Replace the cluster's network by a checkpoint's", "checkpoints", params=P_CLUSTER, body=d.RESTORE,
          response=d.CLUSTER, errors=(404, 409)),
    Route("GET", "/v1/clusters/{cluster_id}/io", "direct_io", direct_io,
          "Direct IO: a WebSocket to predict or train single samples", "clusters", params=P_CLUSTER,
          errors=(404,), websocket=True, description=FRAME_DOC),

    Route("POST", "/v1/datasets", "upload_dataset", upload_dataset,
          "Upload a dataset (multipart: MNIST images+labels, or a CSV table)", "datasets", status=201,
          query=d.DATASET_QUERY, response=d.DATASET, errors=(409,), upload="multipart/form-data"),
    Route("GET", "/v1/datasets", "list_datasets", list_datasets, "List datasets", "datasets", query=d.PAGE_QUERY,
          response=d.PAGES["Dataset"]),
    Route("GET", "/v1/datasets/{dataset_id}", "get_dataset", get_dataset, "Get a dataset", "datasets",
          params=P_DATASET, response=d.DATASET, errors=(404,)),
    Route("DELETE", "/v1/datasets/{dataset_id}", "delete_dataset", delete_dataset, "Delete a dataset", "datasets",
          params=P_DATASET, errors=(404, 409)),

    Route("POST", "/v1/tasks", "create_task", create_task, "Queue a train or request task on a cluster", "tasks",
          status=201, body=d.TASK_CREATE, response=d.TASK, errors=(404,)),
    Route("GET", "/v1/tasks", "list_tasks", list_tasks, "List tasks (of a cluster, in a state)", "tasks",
          query=d.TASK_QUERY, response=d.PAGES["Task"], errors=(404,)),
    Route("GET", "/v1/tasks/{task_id}", "get_task", get_task, "Get a task with its progress", "tasks",
          params=P_TASK, response=d.TASK, errors=(404,)),
    Route("POST", "/v1/tasks/{task_id}/cancel", "cancel_task", cancel_task,
          "Cancel a queued or running task (a running one stops within one chunk)", "tasks", params=P_TASK,
          response=d.TASK, errors=(404, 409)),
    Route("DELETE", "/v1/tasks/{task_id}", "delete_task", delete_task, "Delete a task (cancelling it first)",
          "tasks", params=P_TASK, errors=(404,)),

    Route("GET", "/v1/results", "list_results", list_results, "List request results", "results",
          query=d.PAGE_QUERY, response=d.PAGES["Result"]),
    Route("GET", "/v1/results/{result_id}", "get_result", get_result, "Get a request result", "results",
          params=P_RESULT, response=d.RESULT, errors=(404,)),
    Route("GET", "/v1/results/{result_id}/data", "get_result_data", get_result_data,
          "A page of a result's outputs and arg-max classes", "results", params=P_RESULT, query=d.PAGE_QUERY,
          response=d.RESULT_DATA, errors=(404,)),
    Route("GET", "/v1/results/{result_id}/accuracy", "get_accuracy", get_accuracy,
          "Accuracy of a result against a labelled dataset", "results", params=P_RESULT, query=d.ACCURACY_QUERY,
          response=d.ACCURACY, errors=(404,)),
    Route("DELETE", "/v1/results/{result_id}", "delete_result", delete_result, "Delete a result", "results",
          params=P_RESULT, errors=(404,)),

    Route("POST", "/v1/checkpoints", "upload_checkpoint", upload_checkpoint,
          "Upload a .safetensors checkpoint (the body is the file)", "checkpoints", status=201,
          query=d.CHECKPOINT_QUERY, response=d.CHECKPOINT, errors=(409,), upload="application/octet-stream"),
    Route("GET", "/v1/checkpoints", "list_checkpoints", list_checkpoints, "List checkpoints", "checkpoints",
          query=d.CHECKPOINT_LIST_QUERY, response=d.PAGES["Checkpoint"]),
    Route("GET", "/v1/checkpoints/{checkpoint_id}", "get_checkpoint", get_checkpoint, "Get a checkpoint",
          "checkpoints", params=P_CHECKPOINT, response=d.CHECKPOINT, errors=(404,)),
    Route("GET", "/v1/checkpoints/{checkpoint_id}/file", "download_checkpoint", download_checkpoint,
          "Download a checkpoint as .safetensors", "checkpoints", params=P_CHECKPOINT, errors=(404,),
          download="application/octet-stream"),
    Route("DELETE", "/v1/checkpoints/{checkpoint_id}", "delete_checkpoint", delete_checkpoint,
          "Delete a checkpoint", "checkpoints", params=P_CHECKPOINT, errors=(404,)),

    Route("GET", "/v1/audit", "audit_log", audit_log, "Audit log of changing requests (yours; admins: all)",
          "logs", query=d.LOG_QUERY, response=d.PAGES["AuditEntry"]),
    Route("GET", "/v1/errors", "error_log", error_log, "Error log of internal failures", "logs",
          query=d.LOG_QUERY, response=d.PAGES["ErrorEntry"]),
    Route("GET", "/v1/system", "system", system, "Host, threads and devices", "system", response=d.SYSTEM),
    Route("GET", "/healthz", "health", health, "Liveness probe", "system", response=d.HEALTH, auth=False),
    Route("GET", "/metrics", "metrics", metrics, "Prometheus metrics (text format 0.0.4)", "system", auth=False,
          download="text/plain"),
    Route("GET", "/openapi.json", "openapi", openapi, "This document", "system", auth=False),
]
