"""``hanami-torch``: the command line for the service.

    hanami-torch serve                                  # start the server (needs the service extra)
    hanami-torch login alice --project vision           # asks for the password, keeps the token
    hanami-torch cluster create mnist --template mnist  # the 784-400-10 template
    hanami-torch dataset upload-mnist train --images train-images-idx3-ubyte --labels train-labels-idx1-ubyte
    hanami-torch task create --cluster ID --dataset ID --type train --wait
    hanami-torch --json cluster list

The server address comes from ``--url`` or ``HANAMI_URL`` (default http://127.0.0.1:11418), the
token from ``--token``, ``HANAMI_TOKEN`` or the file that ``login`` writes (``HANAMI_TOKEN_FILE``,
default ``~/.hanami_token``, mode 0600).  Output is a table, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from . import DEFAULT_URL, HanamiClient, HanamiError


def _token_file() -> Path:
    return Path(os.environ.get("HANAMI_TOKEN_FILE", "~/.hanami_token")).expanduser()


def _password(args, prompt: str) -> str:
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("HANAMI_PASSWORD"):
        return os.environ["HANAMI_PASSWORD"]
    return getpass.getpass(prompt)


def _template(value: str) -> str:
    """``mnist`` / ``table`` name a built-in template; anything else is a file."""
    from .. import templates

    builtin = {"mnist": templates.MNIST, "table": templates.TABLE}
    if value in builtin:
        return builtin[value]
    return Path(value).read_text()


# -- output -------------------------------------------------------------------------------------

def _show(value, as_json: bool) -> None:
    if value is None:
        if as_json:
            print("{}")
        return
    if as_json:
        print(json.dumps(value, indent=2))
    elif isinstance(value, dict) and "items" in value and "total" in value:
        _table(value["items"])
        shown = len(value["items"])
        print(f"({value['offset'] + 1 if shown else value['offset']}-{value['offset'] + shown} of {value['total']})")
    elif isinstance(value, dict):
        width = max((len(key) for key in value), default=0)
        for key, item in value.items():
            text = item if isinstance(item, str) else json.dumps(item)
            if isinstance(item, str) and "\n" in item:
                text = item.replace("\n", "\n" + " " * (width + 2))
            print(f"{key:<{width}}  {text}")
    else:
        print(value)


def _table(rows: list[dict]) -> None:
    if not rows:
        print("(none)")
        return
    columns = [key for key in rows[0] if key not in ("template", "columns", "projects", "stats")]
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    print("  ".join(column.upper().ljust(width) for column, width in zip(columns, widths)))
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)))


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value) if not isinstance(value, (dict, list)) else json.dumps(value)


# -- commands -----------------------------------------------------------------------------------

def _serve(args) -> None:
    try:
        from ..service import Config, serve
    except ImportError as error:
        raise SystemExit(f"the server needs the service extra: pip install 'hanami_torch[service]' ({error})")
    config = Config()
    for name in ("host", "port", "workers", "io_threads", "op_threads", "max_upload_bytes", "max_neurons",
                 "token_lifetime_s", "ws_idle_timeout_s", "policy_file", "secret_file"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    if args.home is not None:
        config.home = Path(args.home).expanduser()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve(config)


def _login(client: HanamiClient, args):
    reply = client.login(args.user_id, _password(args, f"password for {args.user_id}: "), args.project)
    path = _token_file()
    path.touch(mode=0o600, exist_ok=True)
    os.chmod(path, 0o600)
    path.write_text(reply["token"])
    return {key: value for key, value in reply.items() if key != "token"} | {"token_file": str(path)}


def _switch(client: HanamiClient, args):
    reply = client.switch_project(args.project_id)
    _token_file().write_text(reply["token"])
    return {key: value for key, value in reply.items() if key != "token"}


def _logout(client: HanamiClient, args):
    client.logout()
    _token_file().unlink(missing_ok=True)


def _wait(client: HanamiClient, task: dict, as_json: bool) -> dict:
    def progress(current: dict):
        if not as_json:
            print(f"\r{current['state']:<9} {100 * current['progress']:5.1f} %", end="", file=sys.stderr, flush=True)

    task = client.wait_task(task["id"], on_progress=progress)
    if not as_json:
        print(file=sys.stderr)
    return task


def _commands() -> dict:
    """(group, action) -> (arguments, function(client, args))."""
    page = [("--limit", {"type": int, "default": 50}), ("--offset", {"type": int, "default": 0})]
    pw = [("--password-stdin", {"action": "store_true", "help": "read the password from standard input"})]

    return {
        ("login", None): ([("user_id", {}), ("--project", {"default": None})] + pw, _login),
        ("logout", None): ([], _logout),
        ("switch", None): ([("project_id", {})], _switch),
        ("me", None): ([], lambda c, a: c.me()),
        ("system", None): ([], lambda c, a: c.system()),
        ("health", None): ([], lambda c, a: c.health()),
        ("openapi", None): ([], lambda c, a: c.openapi()),

        ("user", "create"): ([("user_id", {}), ("--name", {"required": True}), ("--admin", {"action": "store_true"})]
                             + pw, lambda c, a: c.create_user(a.user_id, a.name, _password(a, "new password: "),
                                                              a.admin)),
        ("user", "get"): ([("user_id", {})], lambda c, a: c.get_user(a.user_id)),
        ("user", "list"): (page, lambda c, a: c.list_users(a.limit, a.offset)),
        ("user", "update"): ([("user_id", {}), ("--name", {}), ("--admin", {"action": "store_true", "default": None}),
                              ("--no-admin", {"dest": "admin", "action": "store_false"}),
                              ("--password", {"action": "store_true", "help": "ask for a new password"})] + pw,
                             lambda c, a: c.update_user(a.user_id, name=a.name, is_admin=a.admin,
                                                        password=_password(a, "new password: ") if a.password else None)),
        ("user", "delete"): ([("user_id", {})], lambda c, a: c.delete_user(a.user_id)),

        ("project", "create"): ([("project_id", {}), ("--name", {"required": True})],
                                lambda c, a: c.create_project(a.project_id, a.name)),
        ("project", "get"): ([("project_id", {})], lambda c, a: c.get_project(a.project_id)),
        ("project", "list"): (page, lambda c, a: c.list_projects(a.limit, a.offset)),
        ("project", "delete"): ([("project_id", {})], lambda c, a: c.delete_project(a.project_id)),
        ("project", "add-member"): ([("project_id", {}), ("user_id", {}),
                                     ("--role", {"choices": ["member", "project_admin"], "default": "member"})],
                                    lambda c, a: c.set_member(a.project_id, a.user_id, a.role)),
        ("project", "members"): ([("project_id", {})] + page,
                                 lambda c, a: c.list_members(a.project_id, a.limit, a.offset)),
        ("project", "remove-member"): ([("project_id", {}), ("user_id", {})],
                                       lambda c, a: c.remove_member(a.project_id, a.user_id)),

        ("cluster", "create"): ([("name", {}), ("--template", {"help": "a template file, or 'mnist' / 'table'"}),
                                 ("--checkpoint", {"help": "a checkpoint id instead of a template"}),
                                 ("--seed", {"type": int, "default": 0})],
                                lambda c, a: c.create_cluster(a.name, _template(a.template) if a.template else None,
                                                              checkpoint_id=a.checkpoint, seed=a.seed)),
        ("cluster", "get"): ([("cluster_id", {})], lambda c, a: c.get_cluster(a.cluster_id)),
        ("cluster", "list"): (page, lambda c, a: c.list_clusters(a.limit, a.offset)),
        ("cluster", "delete"): ([("cluster_id", {})], lambda c, a: c.delete_cluster(a.cluster_id)),
        ("cluster", "save"): ([("cluster_id", {}), ("--name", {"required": True})],
                              lambda c, a: c.save_checkpoint(a.cluster_id, a.name)),
        ("cluster", "restore"): ([("cluster_id", {}), ("--checkpoint", {"required": True})],
                                 lambda c, a: c.restore_checkpoint(a.cluster_id, a.checkpoint)),

        ("dataset", "upload-mnist"): ([("name", {}), ("--images", {"required": True}), ("--labels", {"required": True})],
                                      lambda c, a: c.upload_mnist(a.name, a.images, a.labels)),
        ("dataset", "upload-csv"): ([("name", {}), ("table", {})], lambda c, a: c.upload_csv(a.name, a.table)),
        ("dataset", "get"): ([("dataset_id", {})], lambda c, a: c.get_dataset(a.dataset_id)),
        ("dataset", "list"): (page, lambda c, a: c.list_datasets(a.limit, a.offset)),
        ("dataset", "delete"): ([("dataset_id", {})], lambda c, a: c.delete_dataset(a.dataset_id)),

        ("task", "create"): ([("--cluster", {"required": True}), ("--dataset", {"required": True}),
                              ("--type", {"choices": ["train", "request"], "default": "train"}),
                              ("--epochs", {"type": int, "default": 1}), ("--name", {"default": "task"}),
                              ("--wait", {"action": "store_true", "help": "show progress until it ends"})],
                             lambda c, a: (lambda t: _wait(c, t, a.json) if a.wait else t)(
                                 c.create_task(a.cluster, a.dataset, a.type, epochs=a.epochs, name=a.name))),
        ("task", "get"): ([("task_id", {})], lambda c, a: c.get_task(a.task_id)),
        ("task", "list"): ([("--cluster", {}), ("--state", {})] + page,
                           lambda c, a: c.list_tasks(a.cluster, a.state, a.limit, a.offset)),
        ("task", "wait"): ([("task_id", {})], lambda c, a: _wait(c, {"id": a.task_id}, a.json)),
        ("task", "cancel"): ([("task_id", {})], lambda c, a: c.cancel_task(a.task_id)),
        ("task", "delete"): ([("task_id", {})], lambda c, a: c.delete_task(a.task_id)),

        ("result", "get"): ([("result_id", {})], lambda c, a: c.get_result(a.result_id)),
        ("result", "list"): (page, lambda c, a: c.list_results(a.limit, a.offset)),
        ("result", "data"): ([("result_id", {})] + page, lambda c, a: c.result_data(a.result_id, a.limit, a.offset)),
        ("result", "accuracy"): ([("result_id", {}), ("--dataset", {"required": True})],
                                 lambda c, a: c.accuracy(a.result_id, a.dataset)),
        ("result", "delete"): ([("result_id", {})], lambda c, a: c.delete_result(a.result_id)),

        ("checkpoint", "get"): ([("checkpoint_id", {})], lambda c, a: c.get_checkpoint(a.checkpoint_id)),
        ("checkpoint", "list"): ([("--cluster", {})] + page,
                                 lambda c, a: c.list_checkpoints(a.cluster, a.limit, a.offset)),
        ("checkpoint", "download"): ([("checkpoint_id", {}), ("file", {})],
                                     lambda c, a: {"file": str(c.download_checkpoint(a.checkpoint_id, a.file))}),
        ("checkpoint", "upload"): ([("name", {}), ("file", {})], lambda c, a: c.upload_checkpoint(a.name, a.file)),
        ("checkpoint", "delete"): ([("checkpoint_id", {})], lambda c, a: c.delete_checkpoint(a.checkpoint_id)),

        ("log", "audit"): ([("--user", {})] + page, lambda c, a: c.audit_log(a.user, a.limit, a.offset)),
        ("log", "errors"): ([("--user", {})] + page, lambda c, a: c.error_log(a.user, a.limit, a.offset)),
    }


HELP = {
    "login": "log in (asks for the password) and keep the token", "switch": "work in another project", "logout": "revoke the token",
    "me": "who the token belongs to", "system": "host, threads, devices (admin)", "health": "is the server up",
    "openapi": "the API description", "user": "users (admin)", "project": "projects and their members",
    "cluster": "networks: create, inspect, delete, save, restore", "dataset": "upload and manage datasets",
    "task": "train and request tasks", "result": "results of request tasks", "checkpoint": "saved networks",
    "log": "audit and error logs",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hanami-torch", description="Client and server of the hanami_torch service.")
    parser.add_argument("--url", default=os.environ.get("HANAMI_URL", DEFAULT_URL), help="server address")
    parser.add_argument("--token", default=None, help="token (default: HANAMI_TOKEN or the file login wrote)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    top = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    serve = top.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; others need HANAMI_SECRET_FILE)")
    serve.add_argument("--port", type=int, help="port (default 11418)")
    serve.add_argument("--home", help="data folder (default HANAMI_HOME or ~/.hanami)")
    serve.add_argument("--secret-file", help="token secret (default HANAMI_SECRET_FILE)")
    serve.add_argument("--policy-file", help="role policy JSON (default: the one shipped)")
    serve.add_argument("--workers", type=int, help="task worker threads (default: CPU count)")
    serve.add_argument("--io-threads", type=int, help="direct-IO threads (default 2)")
    serve.add_argument("--op-threads", type=int, help="threads per operator call (torch.set_num_threads)")
    serve.add_argument("--max-upload-bytes", type=int, help="largest upload (default 1 GiB)")
    serve.add_argument("--max-neurons", type=int, help="largest network (default 1,000,000 neurons)")
    serve.add_argument("--token-lifetime-s", type=float, help="token lifetime (default 3600)")
    serve.add_argument("--ws-idle-timeout-s", type=float, help="idle WebSocket timeout (default 300)")
    serve.set_defaults(run=None)

    groups: dict[str, argparse._SubParsersAction] = {}
    for (group, action), (arguments, function) in _commands().items():
        if action is None:
            sub = top.add_parser(group, help=HELP[group])
        else:
            if group not in groups:
                groups[group] = top.add_parser(group, help=HELP[group]).add_subparsers(
                    dest="action", required=True, metavar="ACTION")
            sub = groups[group].add_parser(action)
        for name, options in arguments:
            sub.add_argument(name, **options)
        sub.set_defaults(run=function)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.group == "serve":
        _serve(args)
        return 0
    token = args.token or os.environ.get("HANAMI_TOKEN")
    if token is None and _token_file().is_file():
        token = _token_file().read_text().strip()
    with HanamiClient(args.url, token) as client:
        try:
            _show(args.run(client, args), args.json)
        except HanamiError as error:
            if args.json:
                print(json.dumps({"error": {"status": error.status, "code": error.code, "message": error.message}}),
                      file=sys.stderr)
            else:
                print(f"error: {error}", file=sys.stderr)
            return 1
        except (OSError, ConnectionError) as error:
            print(f"error: cannot reach {args.url}: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
