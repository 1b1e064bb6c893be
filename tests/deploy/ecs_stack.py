"""Deploys deploy/aws/flagpole.yaml into moto's CloudFormation exactly as docs/deploy-ecs.md does.

Run with the repository's .venv (scripts/setup-test-env):

    .venv/bin/python tests/deploy/ecs_stack.py [--daemon target/debug/flagpole]

What it does, in the walkthrough's order:
  1. starts moto on a free loopback port; finds the default VPC and its subnets as step 3 does;
     requests the ACM certificate of step 2 in moto's ACM (the listener refers to it);
  2. reads every `aws cloudformation deploy` of docs/deploy-ecs.md, expands its
     `--parameter-overrides` with the walkthrough's variables, checks each value against the
     template's own constraints (AllowedValues, AllowedPattern, MinValue, MaxValue: moto does
     not enforce them), and deploys them through change sets as the CLI does (an update keeps
     the previous value of every parameter it does not name);
  3. after each deployment checks what moto created: target groups and health checks, the
     listener and its rules (including flagd.sync.v1 to port 8015), the service's load
     balancers and desired count, the task definition's ports and environment, the task
     role's IAM actions, auto scaling, the outputs; with AuthTokensSecretArn (the secret made
     as the walkthrough makes it, in moto's Secrets Manager) the container's `Secrets` entry
     and the execution role's GetSecretValue on that one ARN;
  4. with --daemon, starts the real daemon with the task definition's environment against
     moto's S3/SQS/SNS, uploads the walkthrough's flags.json, connects the OpenFeature Python
     provider in IN_PROCESS mode to the port the sync listener rule reaches (8015 in the task)
     and shows the walkthrough's edit arriving as a configuration change, also on a v1
     EventStream, and v1 ResolveAll. The task definition's secrets are resolved as ECS would
     (FLAGPOLE_AUTH_TOKENS): a call without the token is refused, the provider sends it.
Prints one line per check, what moto cannot model, and closes with "N passed, N failed".
"""

import argparse
import ast
import fnmatch
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import boto3
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy/aws/flagpole.yaml"
WALKTHROUGH = ROOT / "docs/deploy-ecs.md"
STACK = "flagpole"
REGION = "eu-west-1"
ACCOUNT = "123456789012"

passed = 0
failed = 0
unmodelled = []
unsupported_types = set()


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok    {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL  {name}" + (f": {detail}" if detail else ""), flush=True)
    return ok


def note(what):
    if what not in unmodelled:
        unmodelled.append(what)


# ---------- the template, read as data ----------
class _Tagged(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {f"!{suffix}": value}


_Tagged.add_multi_constructor("!", _tag)


def load_template():
    return yaml.load(TEMPLATE.read_text(), Loader=_Tagged)


def constraint_errors(template, name, value):
    """The errors CloudFormation itself would report for `name=value`."""
    spec = template["Parameters"].get(name)
    if spec is None:
        return [f"{name} is not a parameter of the template"]
    errors = []
    values = value.split(",") if spec["Type"].startswith("List<") else [value]
    for v in values:
        if "AllowedValues" in spec and v not in [str(a) for a in spec["AllowedValues"]]:
            errors.append(f"{name}={v!r} not in AllowedValues {spec['AllowedValues']}")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], v):
            errors.append(f"{name}={v!r} does not match {spec['AllowedPattern']}")
        if spec["Type"] == "Number":
            try:
                n = float(v)
            except ValueError:
                errors.append(f"{name}={v!r} is not a number")
                continue
            if "MinValue" in spec and n < float(spec["MinValue"]):
                errors.append(f"{name}={v} is below MinValue {spec['MinValue']}")
            if "MaxValue" in spec and n > float(spec["MaxValue"]):
                errors.append(f"{name}={v} is above MaxValue {spec['MaxValue']}")
    return errors


def evaluate(expr, values, template):
    """Evaluates a condition expression (Equals, Not, And, Or, Condition, Ref) for `values`."""
    if isinstance(expr, dict):
        (tag, arg), = expr.items()
        if tag == "!Ref":
            return values[arg]
        if tag == "!Equals":
            return str(evaluate(arg[0], values, template)) == str(evaluate(arg[1], values, template))
        if tag == "!Not":
            return not evaluate(arg[0], values, template)
        if tag == "!And":
            return all(evaluate(a, values, template) for a in arg)
        if tag == "!Or":
            return any(evaluate(a, values, template) for a in arg)
        if tag == "!Condition":
            return evaluate(template["Conditions"][arg], values, template)
        raise ValueError(f"unsupported condition function {tag}")
    return expr


def effective_resources(template, params):
    """Logical id -> type of the resources the stack has with `params` (defaults filled in)."""
    values = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()}
    values.update(params)
    return {k: r["Type"] for k, r in template["Resources"].items()
            if "Condition" not in r or evaluate(template["Conditions"][r["Condition"]], values, template)}


def moto_unsupported(types):
    from moto.cloudformation.parsing import get_model_map

    known = get_model_map()
    return sorted({t for t in types if t not in known})


# ---------- the walkthrough, read as data ----------
def shell_blocks(text):
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def joined_lines(block):
    return block.replace("\\\n", " ").splitlines()


def literal_assignments(blocks):
    """NAME=value lines without expansions, e.g. DOMAIN=flags.example.com (first one wins)."""
    found = {}
    for block in blocks:
        for line in joined_lines(block):
            if not re.match(r"\s*[A-Z_][A-Z0-9_]*=", line):
                continue
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            for word in words:
                m = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=([^$`]*)", word)
                if m and m.group(1) not in found:
                    found[m.group(1)] = m.group(2)
    return found


def deploy_commands(blocks):
    """The --parameter-overrides of each `aws cloudformation deploy`, in document order."""
    commands = []
    for block in blocks:
        for line in joined_lines(block):
            if "aws cloudformation deploy" not in line:
                continue
            words = shlex.split(line.split(" #", 1)[0])
            overrides = []
            if "--parameter-overrides" in words:
                for word in words[words.index("--parameter-overrides") + 1 :]:
                    if word.startswith("--"):
                        break
                    overrides.append(word)
            stack = words[words.index("--stack-name") + 1]
            template = words[words.index("--template-file") + 1]
            commands.append((stack, template, overrides, words))
    return commands


def expand(word, variables):
    def one(m):
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise KeyError(f"the walkthrough uses ${name}, which this test does not know")
        return variables[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", one, word)


def heredoc(text, target):
    m = re.search(r"cat > " + re.escape(target) + r" <<'EOF'\n(.*?)\nEOF\n", text, re.S)
    return None if m is None else m.group(1) + "\n"


# ---------- moto ----------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # moto warns once per unsupported resource type; the test reports those types itself.
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="moto")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def wait_stack(cf, want):
    """Waits for the stack to leave *_IN_PROGRESS; no timed assertion, a bounded poll."""
    for _ in range(600):
        stack = cf.describe_stacks(StackName=STACK)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            break
        time.sleep(0.1)
    return stack["StackStatus"] == want, stack


def deploy(cf, template, body, overrides, variables, first):
    """One `aws cloudformation deploy`: returns (stack or None, the stack's parameters)."""
    named = {}
    for word in overrides:
        key, _, raw = word.partition("=")
        named[key] = expand(raw, variables)
    problems = [e for k, v in named.items() for e in constraint_errors(template, k, v)]
    check(f"parameters {', '.join(sorted(named))} satisfy the template's constraints",
          not problems, "; ".join(problems))
    if problems:
        return None, named
    params = dict(named)
    if not first:
        # `aws cloudformation deploy` keeps the previous value of every parameter not named.
        # (moto 5.2 fails on UsePreviousValue for list parameters: the values are passed back.)
        params = {**previous_parameters(cf), **named}
    broken = rule_errors(template, params)
    check("the deployment satisfies the template's Rules", not broken, "; ".join(broken))
    if broken:
        return None, params
    missing = moto_unsupported(effective_resources(template, params).values())
    unsupported_types.update(missing)
    if any(t.startswith("AWS::ApiGatewayV2::") for t in missing):
        # moto fails the whole stack on outputs of resources it cannot create.
        note("the deployment with the HTTP API (moto has no CloudFormation support for API Gateway "
             "v2): its parameters and resources are checked in the template, not deployed")
        return None, params
    # `aws cloudformation deploy` goes through a change set. moto's change sets leave the stack
    # without outputs, and its update_stack loses resources of this template, so an update is
    # checked as a new stack with the parameters the update would have.
    if not first:
        note("stack updates (moto 5.2's update_stack loses resources of this template): each later "
             "deployment is checked as a new stack with the parameters the update would have")
        cf.delete_stack(StackName=STACK)  # synchronous in moto
    parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]
    cf.create_stack(StackName=STACK, TemplateBody=body, Capabilities=["CAPABILITY_IAM"], Parameters=parameters)
    ok, stack = wait_stack(cf, "CREATE_COMPLETE")
    check(f"stack {stack['StackStatus']}", ok, stack.get("StackStatusReason", ""))
    return stack, params


def previous_parameters(cf):
    """The deployed stack's parameters, as `aws cloudformation deploy` would keep them."""
    previous = {}
    for p in cf.describe_stacks(StackName=STACK)["Stacks"][0]["Parameters"]:
        value = p["ParameterValue"]
        if value.startswith("["):  # moto reports a list parameter as a Python literal
            value = ",".join(ast.literal_eval(value))
        previous[p["ParameterKey"]] = value
    return previous


def rule_errors(template, params):
    """The AssertDescription of every template Rule `params` break (moto ignores Rules)."""
    values = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()}
    values.update(params)
    errors = []
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], values, template):
            continue
        errors += [a["AssertDescription"] for a in rule["Assertions"] if not evaluate(a["Assert"], values, template)]
    return errors


def outputs(stack):
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def resources(cf):
    found = {}
    for r in cf.describe_stack_resources(StackName=STACK)["StackResources"]:
        if "LogicalResourceId" not in r:  # moto's placeholder for a type it does not create
            continue
        found[r["LogicalResourceId"]] = r
    return found


# ---------- checks of what the stack made ----------
def check_load_balancing(clients, res, template):
    elb = clients("elbv2")
    groups = {}
    for logical in ("GrpcTargetGroup", "ConnectTargetGroup", "OfrepTargetGroup", "SyncTargetGroup"):
        arn = res[logical]["PhysicalResourceId"]
        groups[logical] = elb.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]
    want = {
        "GrpcTargetGroup": (8013, "GRPC", {"GrpcCode": "0"}),
        "ConnectTargetGroup": (8013, "HTTP1", {"HttpCode": "200"}),
        "OfrepTargetGroup": (8016, "HTTP1", {"HttpCode": "200"}),
        "SyncTargetGroup": (8015, "GRPC", {"GrpcCode": "0"}),
    }
    moto_drops_version = False
    for logical, (port, version, matcher) in want.items():
        g = groups[logical]
        check(f"{logical}: port {port}, target type ip", (g["Port"], g["TargetType"]) == (port, "ip"),
              f"{g['Port']} {g['TargetType']}")
        declared = template["Resources"][logical]["Properties"]["ProtocolVersion"]
        if g.get("ProtocolVersion") != declared:
            moto_drops_version = True
        check(f"{logical}: protocol version {version} (template)", declared == version, declared)
        check(f"{logical}: health check /readyz on 8014, matcher {matcher}",
              (g["HealthCheckPath"], str(g["HealthCheckPort"]), g.get("Matcher")) == ("/readyz", "8014", matcher),
              f"{g['HealthCheckPath']} {g['HealthCheckPort']} {g.get('Matcher')}")

    if moto_drops_version:
        note("target-group ProtocolVersion (moto's CloudFormation creates every group as HTTP1; "
             "GRPC is checked in the template)")
    attributes = {a["Key"]: a["Value"] for a in elb.describe_load_balancer_attributes(
        LoadBalancerArn=res["LoadBalancer"]["PhysicalResourceId"])["Attributes"]}
    idle = attributes.get("idle_timeout.timeout_seconds")
    if idle is None:
        note("load balancer attributes (moto's CloudFormation does not apply them; checked in the template)")
        declared = template["Resources"]["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]
        idle = next(a["Value"] for a in declared if a["Key"] == "idle_timeout.timeout_seconds")
    check("load balancer idle timeout lets silent sync streams live (>= 300 s)", int(idle) >= 300, str(idle))
    listener_arn = res["HttpsListener"]["PhysicalResourceId"]
    listener = elb.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
    check("listener: HTTPS 443 with the ACM certificate, default action to the gRPC group",
          listener["Port"] == 443 and listener["Protocol"] == "HTTPS"
          and listener["Certificates"][0]["CertificateArn"].startswith("arn:aws:acm:")
          and listener["DefaultActions"][0]["TargetGroupArn"] == groups["GrpcTargetGroup"]["TargetGroupArn"])
    rules = [r for r in elb.describe_rules(ListenerArn=listener_arn)["Rules"] if not r["IsDefault"]]
    by_group = {r["Actions"][0]["TargetGroupArn"]: r for r in rules}

    def paths(rule):
        return [v for c in rule["Conditions"] if c["Field"] == "path-pattern"
                for v in c.get("PathPatternConfig", {}).get("Values", c.get("Values", []))]

    sync_rule = by_group.get(groups["SyncTargetGroup"]["TargetGroupArn"])
    check("listener rule: /flagd.sync.v1.FlagSyncService/* -> sync group (8015)",
          sync_rule is not None and paths(sync_rule) == ["/flagd.sync.v1.FlagSyncService/*"])
    ofrep_rule = by_group.get(groups["OfrepTargetGroup"]["TargetGroupArn"])
    check("listener rule: /ofrep/* -> OFREP group (8016)", ofrep_rule is not None and paths(ofrep_rule) == ["/ofrep/*"])
    connect_rule = by_group.get(groups["ConnectTargetGroup"]["TargetGroupArn"])
    check("listener rule: Connect content types -> Connect group", connect_rule is not None)
    if sync_rule and connect_rule:
        check("the sync rule is evaluated before the Connect rule",
              int(sync_rule["Priority"]) < int(connect_rule["Priority"]))
    # The path every in-process provider calls, matched as the ALB matches path patterns.
    method = "/flagd.sync.v1.FlagSyncService/SyncFlags"
    matching = sorted((int(r["Priority"]), r) for r in rules if any(fnmatch.fnmatchcase(method, p) for p in paths(r)))
    check(f"{method} reaches the sync group first",
          bool(matching) and matching[0][1]["Actions"][0]["TargetGroupArn"] == groups["SyncTargetGroup"]["TargetGroupArn"])
    note("the ALB's routing itself (moto stores listener rules but forwards no traffic): the "
         "sync path is checked by matching the rule patterns here, and the daemon is reached "
         "on the port the sync target group names")
    return groups


def check_service(clients, res, groups, desired, template):
    ecs = clients("ecs")
    cluster = res["Cluster"]["PhysicalResourceId"]
    service = ecs.describe_services(cluster=cluster, services=[res["Service"]["PhysicalResourceId"]])["services"][0]
    check(f"service desired count {desired}", service["desiredCount"] == desired, str(service["desiredCount"]))
    wanted = {(groups[g]["TargetGroupArn"], port) for g, port in
              [("GrpcTargetGroup", 8013), ("ConnectTargetGroup", 8013), ("OfrepTargetGroup", 8016), ("SyncTargetGroup", 8015)]}
    have = {(lb["targetGroupArn"], lb["containerPort"]) for lb in service["loadBalancers"]}
    if not have:
        # moto's CloudFormation drops the service's LoadBalancers: check the template's.
        note("the service's LoadBalancers (moto's CloudFormation drops them; checked in the template)")
        declared = {(lb["TargetGroupArn"]["!Ref"], lb["ContainerPort"])
                    for lb in template["Resources"]["Service"]["Properties"]["LoadBalancers"]}
        have = {(groups[g]["TargetGroupArn"], port) for g, port in declared}
    check("service registers container ports 8013 (x2), 8016 and 8015 with their groups", have == wanted, str(have))
    return service


def check_task_definition(clients, res, variables):
    ecs = clients("ecs")
    task = ecs.describe_task_definition(taskDefinition=res["TaskDefinition"]["PhysicalResourceId"])["taskDefinition"]
    container = task["containerDefinitions"][0]
    ports = {p["containerPort"]: p.get("appProtocol") for p in container["portMappings"]}
    check("task definition ports: 8013 grpc, 8014 http, 8015 grpc, 8016 http",
          ports == {8013: "grpc", 8014: "http", 8015: "grpc", 8016: "http"}, str(ports))
    env = {e["name"]: e["value"] for e in container["environment"]}
    bucket = variables["BUCKET"]
    check("FLAGD_URI is the flags object", env.get("FLAGD_URI") == f"s3://{bucket}/flags/flags.json", str(env.get("FLAGD_URI")))
    check("queue prefix defaults to the stack name", env.get("FLAGPOLE_SQS_QUEUE_PREFIX") == f"{STACK}-task-",
          str(env.get("FLAGPOLE_SQS_QUEUE_PREFIX")))
    check("FLAGPOLE_SNS_TOPIC_ARN is the stack's topic",
          env.get("FLAGPOLE_SNS_TOPIC_ARN") == res["FlagsTopic"]["PhysicalResourceId"])
    dlq = res["FanoutDeadLetterQueue"]["PhysicalResourceId"]
    dlq_arn = clients("sqs").get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    check("the dead-letter queue is outside the tasks' queue prefix (they may delete their queues)",
          not dlq_arn.split(":")[-1].startswith(env.get("FLAGPOLE_SQS_QUEUE_PREFIX", "")), dlq_arn)
    check("FLAGPOLE_SQS_DEAD_LETTER_ARN is the stack's dead-letter queue",
          env.get("FLAGPOLE_SQS_DEAD_LETTER_ARN") == dlq_arn, f"{env.get('FLAGPOLE_SQS_DEAD_LETTER_ARN')} != {dlq_arn}")
    check("EMF metrics on, namespace per stack",
          env.get("FLAGPOLE_METRICS_EMF_INTERVAL") == "60s"
          and env.get("FLAGPOLE_METRICS_EMF_NAMESPACE") == f"flagpole/{STACK}")
    check("container health check is /flagpole healthcheck, user 65532, read-only root",
          container["healthCheck"]["command"] == ["CMD", "/flagpole", "healthcheck"]
          and container.get("user") == "65532" and container.get("readonlyRootFilesystem") is True)
    return env


def check_iam(clients, res):
    iam = clients("iam")
    role = res["TaskRole"]["PhysicalResourceId"]
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    doc = iam.get_role_policy(RoleName=role, PolicyName=names[0])["PolicyDocument"]
    if isinstance(doc, str):
        # moto 5.2 keeps a policy written by CloudFormation as a Python literal, not JSON.
        try:
            doc = json.loads(doc)
        except json.JSONDecodeError:
            doc = ast.literal_eval(doc)
    statements = {s["Sid"]: s for s in doc["Statement"]}

    def actions(sid):
        a = statements[sid]["Action"]
        return sorted([a] if isinstance(a, str) else a)

    check("task role: s3:GetObject only, on flags/*",
          actions("ReadFlags") == ["s3:GetObject"] and str(statements["ReadFlags"]["Resource"]).endswith("/flags/*"))
    check("task role: SQS actions only on <stack>-task-* queues",
          actions("OwnNotificationQueue") == sorted(["sqs:CreateQueue", "sqs:TagQueue", "sqs:GetQueueAttributes",
                                                     "sqs:SetQueueAttributes", "sqs:ReceiveMessage",
                                                     "sqs:DeleteMessage", "sqs:DeleteQueue"])
          and str(statements["OwnNotificationQueue"]["Resource"]).endswith(f":{STACK}-task-*"),
          str(statements["OwnNotificationQueue"]["Resource"]))
    check("task role: sns:Subscribe/Unsubscribe on the topic only",
          actions("SubscribeQueueToFlagChanges") == ["sns:Subscribe", "sns:Unsubscribe"])
    return statements


def inline_policy_statements(iam, role):
    """Every statement of the role's inline policies."""
    statements = []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        if isinstance(doc, str):
            # moto 5.2 keeps a policy written by CloudFormation as a Python literal, not JSON.
            try:
                doc = json.loads(doc)
            except json.JSONDecodeError:
                doc = ast.literal_eval(doc)
        found = doc["Statement"]
        statements += [found] if isinstance(found, dict) else found
    return statements


def check_auth_tokens(clients, res, params):
    """AuthTokensSecretArn: the container's secret, and who may read it."""
    arn = params.get("AuthTokensSecretArn", "")
    task = clients("ecs").describe_task_definition(
        taskDefinition=res["TaskDefinition"]["PhysicalResourceId"])["taskDefinition"]
    container = task["containerDefinitions"][0]
    secrets = container.get("secrets") or []
    env_names = {e["name"] for e in container.get("environment", [])}
    iam = clients("iam")
    execution = inline_policy_statements(iam, res["ExecutionRole"]["PhysicalResourceId"])
    task_role = inline_policy_statements(iam, res["TaskRole"]["PhysicalResourceId"])

    def actions(statement):
        a = statement["Action"]
        return [a] if isinstance(a, str) else list(a)

    def on_secrets(statements):
        return [s for s in statements if any(a.startswith("secretsmanager:") for a in actions(s))]

    check("the task role may read no secret", not on_secrets(task_role), str(on_secrets(task_role)))
    if not arn:
        check("without AuthTokensSecretArn: no container secret, no secret for the execution role",
              not secrets and not on_secrets(execution), f"{secrets} {on_secrets(execution)}")
        return
    check("AuthTokensSecretArn: the container gets FLAGPOLE_AUTH_TOKENS from that secret",
          secrets == [{"name": "FLAGPOLE_AUTH_TOKENS", "valueFrom": arn}], str(secrets))
    check("the tokens are not in the task definition's environment", "FLAGPOLE_AUTH_TOKENS" not in env_names)
    granted = on_secrets(execution)
    check("the execution role: secretsmanager:GetSecretValue on that one ARN, nothing else in Secrets Manager",
          len(granted) == 1 and granted[0]["Effect"] == "Allow"
          and actions(granted[0]) == ["secretsmanager:GetSecretValue"] and granted[0]["Resource"] == arn,
          str(granted))


def task_secrets(clients, res):
    """The container's secrets resolved as ECS resolves them at task start."""
    task = clients("ecs").describe_task_definition(
        taskDefinition=res["TaskDefinition"]["PhysicalResourceId"])["taskDefinition"]
    sm = clients("secretsmanager")
    return {s["name"]: sm.get_secret_value(SecretId=s["valueFrom"])["SecretString"]
            for s in task["containerDefinitions"][0].get("secrets") or []}


def check_static_template(template):
    """What moto does not create or enforce, checked on the template itself."""
    r = template["Resources"]
    check("bucket: DeletionPolicy RetainExceptOnCreate (a failed first create leaves no bucket behind)",
          r["FlagsBucket"]["DeletionPolicy"] == "RetainExceptOnCreate")
    check("DesiredCount allows 0", template["Parameters"]["DesiredCount"]["MinValue"] == 0)
    alarms = {k: v["Properties"] for k, v in r.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    metrics = sorted(a["MetricName"] for a in alarms.values())
    check("alarms: unhealthy hosts, target 5xx, seconds since last sync, dead letters",
          metrics == ["ApproximateNumberOfMessagesVisible", "HTTPCode_Target_5XX_Count", "SecondsSinceLastSync",
                      "UnHealthyHostCount"], str(metrics))
    note("DeletionPolicy/RetainExceptOnCreate and the deployment circuit breaker (no rollback "
         "behaviour in moto); parameter constraints (checked by this test, not by moto)")


def check_http_api_template(template, params):
    existing = effective_resources(template, params)
    check("CreateHttpApi=true: API, VPC link, integration, three routes and a stage",
          all(k in existing for k in ("HttpApi", "VpcLink", "HttpApiIntegration", "OfrepRoute",
                                      "ConnectV1Route", "ConnectV2Route", "HttpApiStage")))
    r = template["Resources"]
    routes = [r[k]["Properties"] for k in ("OfrepRoute", "ConnectV1Route", "ConnectV2Route")]
    check("HTTP API routes are POST only, so CORS preflight is answered by API Gateway (template)",
          all(p["RouteKey"].startswith("POST /") for p in routes), str([p["RouteKey"] for p in routes]))
    check("HTTP API routes take HttpApiAuthorization (template)",
          all(p["AuthorizationType"] == {"!Ref": "HttpApiAuthorization"} for p in routes))
    check(f"HttpApiAuthorization={params['HttpApiAuthorization']}: JWT authorizer only with JWT",
          ("JwtAuthorizer" in existing) == (params["HttpApiAuthorization"] == "JWT"))
    for bad, why in ((dict(params, HttpApiAuthorization="JWT", JwtIssuer=""), "JWT without issuer"),):
        rule = template["Rules"]["JwtNeedsIssuerAndAudience"]
        values = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()}
        values.update(bad)
        applies = evaluate(rule["RuleCondition"], values, template)
        holds = all(evaluate(a["Assert"], values, template) for a in rule["Assertions"])
        check(f"template rule refuses {why}", applies and not holds)
    with_tokens = dict(params, AuthTokensSecretArn=f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:t-AbCdEf")
    check("template rules refuse AuthTokensSecretArn with an IAM or JWT authorizer on the HTTP API, not with NONE",
          rule_errors(template, dict(with_tokens, HttpApiAuthorization="AWS_IAM"))
          and not rule_errors(template, dict(with_tokens, HttpApiAuthorization="NONE")))


def zone_lookup(clients, zone_name):
    """Step 2's Route 53 lookup, run as written: the walkthrough's --query (JMESPath) over
    `list-hosted-zones-by-name --dns-name $ZONE_NAME`, `--output text`, then
    `${ZONE_ID#/hostedzone/}`: the public zone named exactly ZONE_NAME, or "" without one."""
    import jmespath

    query = re.search(r'list-hosted-zones-by-name --dns-name "\$ZONE_NAME" \\\n\s*--query "([^"]+)"',
                      WALKTHROUGH.read_text())
    if not check("the walkthrough looks the zone up with list-hosted-zones-by-name --query", query is not None):
        return ""
    expression = query.group(1).replace("$ZONE_NAME", zone_name)
    answer = clients("route53").list_hosted_zones_by_name(DNSName=zone_name)
    found = jmespath.search(expression, answer) or []
    text = "\t".join(found) if isinstance(found, list) else str(found)  # --output text
    return text.removeprefix("/hostedzone/")


def apply_bucket_notifications(clients, template, res, bucket):
    s3 = clients("s3")
    if s3.get_bucket_notification_configuration(Bucket=bucket).get("TopicConfigurations"):
        return
    note("the bucket's NotificationConfiguration (moto's CloudFormation does not apply it; "
         "the test applies the template's configuration through the S3 API)")
    spec = template["Resources"]["FlagsBucket"]["Properties"]["NotificationConfiguration"]["TopicConfigurations"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"TopicConfigurations": [
        {"TopicArn": res["FlagsTopic"]["PhysicalResourceId"], "Events": [c["Event"]],
         "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "flags/"}]}}} for c in spec]})


def check_scaling(clients, res, scales, template, params):
    existing = effective_resources(template, params)
    check(f"auto scaling {'exists' if scales else 'does not exist'} with DesiredCount={params['DesiredCount']} (template conditions)",
          all((k in existing) == scales for k in ("ScalableTarget", "CpuScaling", "RequestScaling")))
    r = template["Resources"]
    if scales:
        t = r["ScalableTarget"]["Properties"]
        check("scalable target: ecs:service:DesiredCount between MinTasks and MaxTasks (template)",
              t["ScalableDimension"] == "ecs:service:DesiredCount"
              and t["MinCapacity"] == {"!Ref": "MinTasks"} and t["MaxCapacity"] == {"!Ref": "MaxTasks"})
        kinds = sorted(r[p]["Properties"]["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
                       ["PredefinedMetricType"] for p in ("CpuScaling", "RequestScaling"))
        check("target tracking on CPU and ALB requests per target (template)",
              kinds == ["ALBRequestCountPerTarget", "ECSServiceAverageCPUUtilization"], str(kinds))
    if "AWS::ApplicationAutoScaling::ScalableTarget" in moto_unsupported(["AWS::ApplicationAutoScaling::ScalableTarget"]):
        return
    aas = clients("application-autoscaling")
    targets = aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    if not scales:
        check("no scalable target while DesiredCount is 0", not targets and "ScalableTarget" not in res, str(targets))
        return
    check("one scalable target for the service", len(targets) == 1, str(targets))
    if targets:
        t = targets[0]
        check("scaling between MinTasks 2 and MaxTasks 10", (t["MinCapacity"], t["MaxCapacity"]) == (2, 10))
    policies = aas.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    kinds = sorted(p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"]
                   for p in policies)
    check("target tracking on CPU and ALB requests per target",
          kinds == ["ALBRequestCountPerTarget", "ECSServiceAverageCPUUtilization"], str(kinds))


# ---------- the real daemon and provider ----------
def run_daemon_and_provider(daemon, endpoint, clients, env, secrets, bucket, walkthrough, work):
    from openfeature import api
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import CacheType, ResolverType
    from openfeature.event import ProviderEvent

    flags_json = heredoc(walkthrough, "flags.json")
    if not check("the walkthrough writes flags.json", flags_json is not None):
        return
    (work / "flags.json").write_text(flags_json)
    validate = subprocess.run([daemon, "validate", str(work / "flags.json")], capture_output=True, text=True)
    check("`flagpole validate flags.json` accepts it", validate.returncode == 0, validate.stdout + validate.stderr)
    s3 = clients("s3")
    s3.put_object(Bucket=bucket, Key="flags/flags.json", Body=(work / "flags.json").read_bytes(),
                  ContentType="application/json")

    ports = {p: free_port() for p in (8013, 8014, 8015, 8016)}
    proc_env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    proc_env.update(env)
    # What ECS injects from Secrets Manager at task start (the execution role reads it).
    proc_env.update(secrets)
    token = secrets.get("FLAGPOLE_AUTH_TOKENS", "").split(",")[0]
    proc_env.update(
        FLAGD_PORT=str(ports[8013]), FLAGD_MANAGEMENT_PORT=str(ports[8014]),
        FLAGD_SYNC_PORT=str(ports[8015]), FLAGD_OFREP_PORT=str(ports[8016]),
        FLAGPOLE_AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=REGION, FLAGPOLE_REPLICA_ID="task-1", FLAGPOLE_SQS_WAIT_TIME="1s",
        # The stack writes EMF lines every 60 s; every second here, to see some.
        FLAGPOLE_METRICS_EMF_INTERVAL="1s",
        # A poison message reappears after this; 2 s instead of 30 s to see it dead-lettered.
        FLAGPOLE_SQS_VISIBILITY_TIMEOUT="2s",
    )
    log = open(work / "daemon.log", "w")
    proc = subprocess.Popen([daemon, "start"], env=proc_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = False
        for _ in range(200):
            if subprocess.run([daemon, "ready", "--port", str(ports[8014])], capture_output=True).returncode == 0:
                ready = True
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        if not check("daemon with the task definition's environment becomes ready on moto S3", ready,
                     (work / "daemon.log").read_text()[-2000:]):
            return
        queues = clients("sqs").list_queues(QueueNamePrefix=env["FLAGPOLE_SQS_QUEUE_PREFIX"]).get("QueueUrls", [])
        check(f"the task created its queue under the stack's prefix ({env['FLAGPOLE_SQS_QUEUE_PREFIX']})",
              len(queues) == 1, str(queues))
        if queues:
            attributes = clients("sqs").get_queue_attributes(QueueUrl=queues[0], AttributeNames=["RedrivePolicy"])
            redrive = json.loads(attributes.get("Attributes", {}).get("RedrivePolicy", "{}"))
            check("its redrive policy sends a message received 5 times to the stack's dead-letter queue",
                  redrive.get("deadLetterTargetArn") == env["FLAGPOLE_SQS_DEAD_LETTER_ARN"]
                  and str(redrive.get("maxReceiveCount")) == "5", str(redrive))
        subs = clients("sns").list_subscriptions_by_topic(TopicArn=env["FLAGPOLE_SNS_TOPIC_ARN"])["Subscriptions"]
        check("and subscribed it to the stack's topic", any(s["Protocol"] == "sqs" for s in subs), str(subs))

        import grpc

        # The token as the providers send it (docs/security.md): call credentials, which gRPC
        # sends only on a secure channel; local credentials stand in for the ALB's TLS here.
        credentials = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        if token:
            credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
        changed = threading.Event()
        provider = FlagdProvider(host="127.0.0.1", port=ports[8015], resolver_type=ResolverType.IN_PROCESS,
                                 cache=CacheType.DISABLED, deadline_ms=5000, channel_credentials=credentials)
        api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, lambda _e: changed.set())
        api.set_provider(provider)
        client = api.get_client()
        value = None
        for _ in range(100):
            value = client.get_boolean_value("show-welcome-banner", None)
            if value is not None:
                break
            time.sleep(0.1)
        check("IN_PROCESS provider on the sync port (8015 in the task): show-welcome-banner is false",
              value is False, str(value))
        changed.clear()

        # v1 EventStream, as the walkthrough's grpcurl call; v1 ResolveAll.
        from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2 as pb
        from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2_grpc as pb_grpc

        if token:
            with grpc.insecure_channel(f"127.0.0.1:{ports[8013]}") as bare:
                try:
                    pb_grpc.ServiceStub(bare).ResolveAll(pb.ResolveAllRequest(), timeout=5)
                    refused = None
                except grpc.RpcError as error:
                    refused = error.code()
            check("FLAGPOLE_AUTH_TOKENS from the secret: a call without the token is UNAUTHENTICATED",
                  refused == grpc.StatusCode.UNAUTHENTICATED, str(refused))
        channel = grpc.secure_channel(f"127.0.0.1:{ports[8013]}", credentials)
        stub = pb_grpc.ServiceStub(channel)
        everything = stub.ResolveAll(pb.ResolveAllRequest(), timeout=5)
        check("v1 ResolveAll answers with the uploaded flags", "show-welcome-banner" in everything.flags)
        stream = stub.EventStream(pb.EventStreamRequest(), timeout=30)
        first = next(stream)
        check("v1 EventStream opens with provider_ready", first.type == "provider_ready", first.type)

        edit = re.search(r"^(sed -i .* flags\.json)$", walkthrough, re.M)
        if check("the walkthrough edits flags.json with sed", edit is not None):
            subprocess.run(["bash", "-c", edit.group(1)], cwd=work, check=True)
            check("the edit changes the document", (work / "flags.json").read_text() != flags_json)
            s3.put_object(Bucket=bucket, Key="flags/flags.json", Body=(work / "flags.json").read_bytes(),
                          ContentType="application/json")
            event = None
            for message in stream:
                if message.type == "configuration_change":
                    event = message
                    break
            check("the edit arrives on the EventStream as configuration_change",
                  event is not None and dict(event.data["flags"]["show-welcome-banner"]) == {"type": "update"},
                  str(event))
            check("the IN_PROCESS provider hears the change (PROVIDER_CONFIGURATION_CHANGED)", changed.wait(30))
            value = client.get_boolean_value("show-welcome-banner", None)
            check("and evaluates the edited flag: show-welcome-banner is true", value is True, str(value))
        stream.cancel()
        channel.close()
        api.shutdown()

        # A poison message: received, not understood, kept; after 5 receives moto's redrive
        # moves it to the stack's dead-letter queue instead of it returning for an hour.
        sqs = clients("sqs")
        if queues:
            sqs.send_message(QueueUrl=queues[0], MessageBody="not a flag change")
            dlq = sqs.get_queue_url(QueueName=env["FLAGPOLE_SQS_DEAD_LETTER_ARN"].split(":")[-1])["QueueUrl"]
            dead = 0
            for _ in range(600):
                attributes = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
                dead = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
                if dead:
                    break
                time.sleep(0.1)
            check("a poison message ends in the dead-letter queue after 5 receives", dead == 1, str(dead))

        # The EMF lines the stack's configuration-age alarm reads from awslogs.
        emf = None
        for _ in range(100):
            for line in (work / "daemon.log").read_text().splitlines():
                if line.startswith("{") and '"_aws"' in line:
                    doc = json.loads(line)
                    if "SecondsSinceLastSync" in doc and "Source" not in doc:
                        emf = doc
            if emf:
                break
            time.sleep(0.1)
        directive = (emf or {}).get("_aws", {}).get("CloudWatchMetrics", [{}])[0]
        check("EMF line on stdout: namespace flagpole/<stack>, SecondsSinceLastSync and counters",
              emf is not None and directive.get("Namespace") == f"flagpole/{STACK}"
              and directive.get("Dimensions") == [[]]
              and {"SecondsSinceLastSync", "ConfigurationAgeSeconds", "RejectedDocuments", "Evaluations"}
              <= {m["Name"] for m in directive.get("Metrics", [])}, str(emf))
        if emf:
            check("the alarm's figure is fresh (SecondsSinceLastSync below ConfigAgeAlarmSeconds' default)",
                  emf["SecondsSinceLastSync"] < 900, str(emf["SecondsSinceLastSync"]))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    check("daemon stops on SIGTERM and deletes its queue",
          not clients("sqs").list_queues(QueueNamePrefix=env["FLAGPOLE_SQS_QUEUE_PREFIX"]).get("QueueUrls"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--daemon", help="flagpole binary to run against the deployed stack's resources")
    args = parser.parse_args()
    started = time.time()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    server, endpoint = start_moto()
    print(f"moto on {endpoint}", flush=True)

    def clients(name):
        return boto3.client(name, endpoint_url=endpoint, region_name=REGION)

    try:
        run(args, clients, endpoint)
    except Exception as error:  # a crash is a failure, reported with the rest
        import traceback

        traceback.print_exc()
        check("the test ran to the end", False, repr(error))
    finally:
        server.stop()
        print("moto cannot model (checked otherwise or not at all):")
        if unsupported_types:
            print("  - resource types moto's CloudFormation does not create (checked in the template): "
                  + ", ".join(sorted(unsupported_types)))
        for what in unmodelled:
            print(f"  - {what}")
        print(f"ecs_stack: {time.time() - started:.1f}s")
        print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def run(args, clients, endpoint):
    if True:
        template = load_template()
        body = TEMPLATE.read_text()
        walkthrough = WALKTHROUGH.read_text()
        blocks = shell_blocks(walkthrough)
        variables = literal_assignments(blocks)
        # Step 3's default-VPC lookup, done by the test against moto.
        ec2 = clients("ec2")
        import jmespath

        vpc_query = re.search(r"describe-vpcs --filters Name=is-default,Values=true --query '([^']+)'", walkthrough)
        subnet_query = re.search(r"describe-subnets --filters Name=vpc-id,Values=\"\$VPC\" \\\n\s*--query '([^']+)'", walkthrough)
        check("the walkthrough finds the default VPC and its subnets with describe-vpcs/describe-subnets --query",
              vpc_query is not None and subnet_query is not None)
        vpc = jmespath.search(vpc_query.group(1), ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}]))
        subnets = ",".join(jmespath.search(subnet_query.group(1), ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}])))  # --output text | tr '\t' ','
        check("default VPC and subnets found", vpc.startswith("vpc-") and subnets.count("subnet-") >= 2, f"{vpc} {subnets}")
        # Step 2: the certificate, requested in moto's ACM (the listener refuses an unknown one).
        cert = clients("acm").request_certificate(DomainName=variables["DOMAIN"], ValidationMethod="DNS")["CertificateArn"]
        # Step 2's query for the validation record, run on moto's answer.
        import jmespath

        query = re.search(r"describe-certificate --certificate-arn \"\$CERT_ARN\" \\\n\s*--query '([^']+)'", walkthrough)
        record = None
        if check("the walkthrough reads the validation record with describe-certificate --query", query is not None):
            record = jmespath.search(query.group(1), clients("acm").describe_certificate(CertificateArn=cert))
        check("that query yields the CNAME to create (Name, Type, Value)",
              isinstance(record, dict) and record.get("Type") == "CNAME" and record.get("Name") and record.get("Value"),
              str(record))
        note("ACM validation itself and `aws acm wait certificate-validated` (moto issues the "
             "certificate at once; real validation waits for the CNAME)")
        # Step 3's hosted-zone lookup finds no zone in an empty account: empty HostedZoneId.
        zones = zone_lookup(clients, variables["ZONE_NAME"])
        variables.update(
            AWS_REGION=REGION, ACCOUNT=ACCOUNT, REGISTRY=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
            BUCKET=f"flagpole-flags-{ACCOUNT}", CERT_ARN=cert, VPC=vpc, PUBLIC=subnets, PRIVATE=subnets,
            ZONE_ID=zones, INGRESS_CIDR="203.0.113.7/32",
        )
        check("an empty account has no hosted zone: HostedZoneId stays empty", variables["ZONE_ID"] == "")
        # The bearer-token secret, made and looked up as the walkthrough does.
        create = re.search(r"aws secretsmanager create-secret --name (\S+) --secret-string \"\$TOKEN\"", walkthrough)
        arn_query = re.search(r"describe-secret --secret-id (\S+) --query (\S+) --output text", walkthrough)
        if check("the walkthrough stores the tokens with create-secret and reads its ARN with describe-secret",
                 create is not None and arn_query is not None and create.group(1) == arn_query.group(1)):
            import secrets as _secrets

            token = _secrets.token_hex(32)
            sm = clients("secretsmanager")
            sm.create_secret(Name=create.group(1), SecretString=token)
            variables.update(TOKEN=token, TOKENS_ARN=jmespath.search(
                arn_query.group(2), sm.describe_secret(SecretId=create.group(1))))
            check("that ARN is a full Secrets Manager ARN the template accepts",
                  not constraint_errors(template, "AuthTokensSecretArn", variables["TOKENS_ARN"]),
                  variables["TOKENS_ARN"])
        commands = deploy_commands(blocks)
        check("the walkthrough deploys the stack at least twice (no tasks, then tasks)", len(commands) >= 2, str(len(commands)))
        for stack, path, _, _ in commands:
            check(f"deploy command names stack {STACK} and {path}", stack == STACK and path == "deploy/aws/flagpole.yaml")
        check_static_template(template)

        # Step 3: the first deployment, with no tasks.
        cf = clients("cloudformation")
        stack, params = deploy(cf, template, body, commands[0][2], variables, first=True)
        check("the first deployment starts no task (DesiredCount=0)", params.get("DesiredCount") == "0")
        if stack is None:
            return
        res = resources(cf)
        groups = check_load_balancing(clients, res, template)
        check_service(clients, res, groups, 0, template)
        env = check_task_definition(clients, res, variables)
        check_iam(clients, res)
        check_auth_tokens(clients, res, params)
        check_scaling(clients, res, False, template, params)
        out = outputs(stack)
        check("outputs: SyncEndpoint and GrpcEndpoint are the domain on 443",
              out.get("SyncEndpoint") == f"{variables['DOMAIN']}:443" and out.get("GrpcEndpoint") == f"{variables['DOMAIN']}:443",
              str(out))
        check("no DNS record without a hosted zone", "DnsRecord" not in res)
        s3 = clients("s3")
        bucket = variables["BUCKET"]
        check("the bucket exists", bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]])
        bucket_props = template["Resources"]["FlagsBucket"]["Properties"]
        if s3.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
            note("bucket versioning, encryption and public-access block (moto's CloudFormation "
                 "does not apply them; checked in the template)")
        check("bucket versioned (template)", bucket_props["VersioningConfiguration"]["Status"] == "Enabled")

        apply_bucket_notifications(clients, template, res, bucket)
        # Step 5: start the tasks (every other parameter keeps its value).
        stack, params = deploy(cf, template, body, commands[1][2], variables, first=False)
        if stack is None:
            return
        res = resources(cf)
        check_service(clients, res, groups, int(params["DesiredCount"]), template)
        check_scaling(clients, res, True, template, params)
        note("task placement, the load balancer's health checks and ECS's container health check "
             "(moto runs no task): the daemon below stands in for one task")

        for stack_name, _, overrides, _ in commands[2:]:
            stack, params = deploy(cf, template, body, overrides, variables, first=False)
            if params.get("CreateHttpApi") == "true":
                check_http_api_template(template, params)
            if stack is not None and params.get("AuthTokensSecretArn"):
                check_auth_tokens(clients, resources(cf), params)
            if stack is not None and params.get("CreateHttpApi") == "true":
                res = resources(cf)
                check("HTTP API created with its routes", all(r in res for r in ("HttpApi", "OfrepRoute", "ConnectV1Route")),
                      str(sorted(res)))
                routes = clients("apigatewayv2").get_routes(ApiId=res["HttpApi"]["PhysicalResourceId"])["Items"]
                keys = sorted(r["RouteKey"] for r in routes)
                check("HTTP API routes are POST only (CORS preflight stays with API Gateway)",
                      all(k.startswith("POST ") for k in keys), str(keys))
                check(f"HTTP API routes use {params['HttpApiAuthorization']} authorization",
                      all(r.get("AuthorizationType") == params["HttpApiAuthorization"] for r in routes),
                      str([r.get("AuthorizationType") for r in routes]))
        res = resources(cf)
        apply_bucket_notifications(clients, template, res, bucket)
        env = check_task_definition(clients, res, variables)

        # Step 2/3 in an account with hosted zones: an unrelated public zone listed first and a
        # private zone of the same name must not be picked; the record aliases the ALB.
        route53 = clients("route53")
        route53.create_hosted_zone(Name="aaa-unrelated.org.", CallerReference="unrelated")
        route53.create_hosted_zone(Name=f"{variables['ZONE_NAME']}.", CallerReference="private",
                                   VPC={"VPCRegion": REGION, "VPCId": variables["VPC"]},
                                   HostedZoneConfig={"PrivateZone": True, "Comment": "private"})
        public = route53.create_hosted_zone(Name=f"{variables['ZONE_NAME']}.", CallerReference="public")
        public_id = public["HostedZone"]["Id"].split("/")[-1]
        variables["ZONE_ID"] = zone_lookup(clients, variables["ZONE_NAME"])
        check("the walkthrough's lookup picks the public zone of ZONE_NAME, not the first or a private one",
              variables["ZONE_ID"] == public_id, f"{variables['ZONE_ID']} != {public_id}")
        stack, params = deploy(cf, template, body, ['HostedZoneId=$ZONE_ID'], variables, first=False)
        if stack is not None:
            res = resources(cf)
            records = route53.list_resource_record_sets(HostedZoneId=public_id)["ResourceRecordSets"]
            alias = [r for r in records if r["Name"].rstrip(".") == variables["DOMAIN"] and r["Type"] == "A"]
            check("with a hosted zone the stack creates the A alias of DomainName",
                  "DnsRecord" in res and len(alias) == 1 and "AliasTarget" in alias[0], str(alias))
            apply_bucket_notifications(clients, template, res, bucket)
            env = check_task_definition(clients, res, variables)
        check("the last deployment still requires tokens (AuthTokensSecretArn kept)",
              bool(params.get("AuthTokensSecretArn")), str(params.get("AuthTokensSecretArn")))

        if args.daemon:
            secrets = task_secrets(clients, res)
            with tempfile.TemporaryDirectory() as work:
                run_daemon_and_provider(args.daemon, endpoint, clients, env, secrets, bucket, walkthrough, Path(work))
        else:
            note("the daemon and the IN_PROCESS provider (run with --daemon to include them)")


if __name__ == "__main__":
    main()
