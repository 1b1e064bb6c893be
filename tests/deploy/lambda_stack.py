"""Deploys deploy/aws/lambda.yaml into moto's CloudFormation exactly as docs/lambda.md does.

Run with the repository's .venv (scripts/setup-test-env):

    .venv/bin/python tests/deploy/lambda_stack.py [--zips DIR]

What it does:
  1. checks the two zips scripts/package-lambda wrote to DIR (default target/lambda): the layer
     holds exactly extensions/flagpole, the function exactly bootstrap, both executable ELF files;
  2. starts moto on a free loopback port and runs the "Deploy" section of docs/lambda.md as
     written: the buckets it makes, the `aws s3 cp` of the zips and of flags.json, then every
     `aws cloudformation deploy`, its `--parameter-overrides` expanded with the section's
     variables and checked against the template's constraints (moto does not enforce them);
  3. after each deployment checks what moto created: the layer (content, architectures), the
     example function (python3.12 with the layer, FLAGD_URI and max age), the flags function
     (provided.al2023, bootstrap, environment), both roles' least-privilege policy
     (s3:GetObject on the flags prefix only), the Function URL and its permission, the outputs;
  4. says what moto cannot do (it runs Lambda code only in Docker, and creates no Function URL
     or API Gateway v2 from CloudFormation): those parts are checked in the template.
Prints one line per check and closes with "N passed, N failed".
"""

import argparse
import ast
import copy
import json
import os
import re
import shlex
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import boto3
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ecs_stack as common  # noqa: E402  (the shared template and walkthrough readers)
from ecs_stack import check, note  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy/aws/lambda.yaml"
WALKTHROUGH = ROOT / "docs/lambda.md"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
FLAGS_JSON = '{"flags":{"show-welcome-banner":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off"}}}'


def load_template():
    return yaml.load(TEMPLATE.read_text(), Loader=common._Tagged)


def deploy_section(text):
    m = re.search(r"^## Deploy \(CloudFormation\)\n(.*?)^## ", text, re.S | re.M)
    return m.group(1) if m else ""


# ---------- the zips ----------
def check_zip(path, member):
    if not check(f"{path.name} exists", path.is_file(), str(path)):
        return
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        check(f"{path.name} holds exactly {member}", names == [member], str(names))
        if names != [member]:
            return
        mode = infos[0].external_attr >> 16
        check(f"{path.name}: {member} is a regular executable file (0755)",
              stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o755, oct(mode))
        head = z.read(member)[:20]
        check(f"{path.name}: {member} is an x86_64 or arm64 ELF executable",
              head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") in (0x3E, 0xB7), head.hex())


# ---------- the walkthrough ----------
def shell_words(block):
    for line in common.joined_lines(block):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        yield line, shlex.split(line, comments=True)


def variables_of(blocks):
    """NAME=value and NAME=$(command) lines, the commands answered as AWS would here."""
    found = {}
    for block in blocks:
        for line, words in shell_words(block):
            m = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(.*)", line)
            if not m:
                continue
            name, raw = m.groups()
            if raw.startswith("$(aws sts get-caller-identity"):
                found[name] = ACCOUNT
            else:
                found[name] = common.expand(shlex.split(raw)[0], found)
    return found


def run_s3_commands(blocks, variables, clients, zips, work):
    s3 = clients("s3")
    copied = {}
    for block in blocks:
        for _, words in shell_words(block):
            if words[:3] == ["aws", "s3", "mb"]:
                bucket = common.expand(words[3], variables).removeprefix("s3://")
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
                check(f"aws s3 mb {bucket}", bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]])
            elif words[:3] == ["aws", "s3", "cp"]:
                source = common.expand(words[3], variables)
                target = common.expand(words[4], variables).removeprefix("s3://")
                bucket, _, key = target.partition("/")
                if source.startswith("target/lambda/"):
                    local = zips / Path(source).name
                elif source == "flags.json":
                    local = work / "flags.json"
                    local.write_text(FLAGS_JSON)
                else:
                    check(f"aws s3 cp {source}: a source this test knows", False)
                    continue
                if not check(f"aws s3 cp {source} s3://{target}: the file exists", local.is_file(), str(local)):
                    continue
                s3.upload_file(str(local), bucket, key)
                copied[(bucket, key)] = local
    return copied


# ---------- what moto can deploy ----------
def references(value):
    """Logical ids a template value refers to (Ref, GetAtt, ${X} in Sub)."""
    found = set()
    if isinstance(value, dict):
        for tag, arg in value.items():
            if tag == "!Ref" and isinstance(arg, str):
                found.add(arg)
            elif tag == "!GetAtt":
                found.add((arg if isinstance(arg, str) else arg[0]).split(".")[0])
            elif tag == "!Sub":
                text = arg if isinstance(arg, str) else arg[0]
                found.update(re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9]+)?\}", text))
                if not isinstance(arg, str):
                    found |= references(arg[1])
            else:
                found |= references(arg)
    elif isinstance(value, list):
        for v in value:
            found |= references(v)
    return found


def deployable(template, params):
    """The template moto's CloudFormation can create: resources of types it does not know,
    what refers to them and their outputs removed. Returns (body, removed logical ids)."""
    t = copy.deepcopy(template)
    resources = t["Resources"]
    missing = set(common.moto_unsupported({r["Type"] for r in resources.values()}))
    common.unsupported_types.update(m for m in missing
                                    if m in common.effective_resources(template, params).values())
    removed = {k for k, r in resources.items() if r["Type"] in missing}
    changed = True
    while changed:
        changed = False
        for k, r in list(resources.items()):
            if k not in removed and references(r.get("Properties", {})) & removed:
                removed.add(k)
                changed = True
    for k in removed:
        del resources[k]
    for k, o in list(t.get("Outputs", {}).items()):
        if references(o["Value"]) & removed:
            del t["Outputs"][k]
    return yaml.dump(to_cfn(t), sort_keys=False), removed


def to_cfn(value):
    """The tagged YAML read by common._Tagged back to CloudFormation's JSON function form."""
    if isinstance(value, dict):
        if len(value) == 1:
            (k, v), = value.items()
            if k.startswith("!"):
                name = {"!Ref": "Ref", "!Condition": "Condition"}.get(k, "Fn::" + k[1:])
                if k == "!GetAtt" and isinstance(v, str):
                    v = v.split(".", 1)
                return {name: to_cfn(v)}
        return {k: to_cfn(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_cfn(v) for v in value]
    return value


def wait_stack(cf, name):
    for _ in range(600):
        stack = cf.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            break
        time.sleep(0.1)
    return stack


def deploy(cf, template, stack_name, overrides, variables, previous):
    named = {}
    for word in overrides:
        key, _, raw = word.partition("=")
        named[key] = common.expand(raw, variables)
    problems = [e for k, v in named.items() for e in common.constraint_errors(template, k, v)]
    check(f"parameters {', '.join(sorted(named))} satisfy the template's constraints",
          not problems, "; ".join(problems))
    # `aws cloudformation deploy` keeps the previous value of every parameter not named; a
    # parameter without a default must be named the first time.
    params = {**previous, **named}
    required = [k for k, spec in template["Parameters"].items() if "Default" not in spec and k not in params]
    check("every parameter without a default is given", not required, str(required))
    if problems or required:
        return None, params
    body, removed = deployable(template, params)
    if removed:
        note("AWS::Lambda::Url and AWS::ApiGatewayV2::* (moto's CloudFormation creates neither): the "
             "test deploys the template without them and what refers to them, creates the Function "
             "URL through moto's Lambda API with the template's properties, and checks the rest in "
             "the template")
    if previous:
        note("stack updates (moto's update_stack is not used): each later deployment is created as "
             "a new stack with the parameters the update would have")
        cf.delete_stack(StackName=stack_name)
        # moto's delete_stack leaves the layer behind; CloudFormation would delete it.
        lam = boto3.client("lambda", endpoint_url=cf.meta.endpoint_url, region_name=REGION)
        for layer in lam.list_layers()["Layers"]:
            for version in lam.list_layer_versions(LayerName=layer["LayerName"])["LayerVersions"]:
                lam.delete_layer_version(LayerName=layer["LayerName"], VersionNumber=version["Version"])
    cf.create_stack(StackName=stack_name, TemplateBody=body, Capabilities=["CAPABILITY_IAM"],
                    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
    stack = wait_stack(cf, stack_name)
    check(f"stack {stack['StackStatus']}", stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason", ""))
    return stack, params


def resources(cf, stack_name):
    return {r["LogicalResourceId"]: r for r in cf.describe_stack_resources(StackName=stack_name)["StackResources"]
            if "LogicalResourceId" in r}


# ---------- checks of what the stack made ----------
def policy_document(doc):
    if isinstance(doc, str):
        # moto keeps a policy written by CloudFormation as a Python literal, not JSON.
        try:
            return json.loads(doc)
        except json.JSONDecodeError:
            return ast.literal_eval(doc)
    return doc


def check_role(clients, role_name, label, params, template, logical):
    iam = clients("iam")
    names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    check(f"{label} role: one inline policy", len(names) == 1, str(names))
    statements = [s for n in names
                  for s in policy_document(iam.get_role_policy(RoleName=role_name, PolicyName=n)["PolicyDocument"])["Statement"]]
    want = f"arn:aws:s3:::{params['FlagsBucket']}/{params.get('FlagsPrefix', 'flags/')}*"
    actions = sorted({a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])})
    targets = sorted({r for s in statements for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])})
    check(f"{label} role: only s3:GetObject, only on {want}",
          actions == ["s3:GetObject"] and targets == [want] and all(s["Effect"] == "Allow" for s in statements),
          f"{actions} on {targets}")
    attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]]
    if not attached:
        note("a role's ManagedPolicyArns (moto's CloudFormation does not attach them): checked in the template")
        declared = template["Resources"][logical]["Properties"]["ManagedPolicyArns"]
        attached = [common.expand(d["!Sub"].replace("${AWS::Partition}", "aws"), {}) for d in declared]
    check(f"{label} role: managed policy AWSLambdaBasicExecutionRole only (logs)",
          attached == ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"], str(attached))
    trust = policy_document(iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"])
    principals = [s["Principal"].get("Service") for s in trust["Statement"]]
    check(f"{label} role: assumed by lambda.amazonaws.com only", principals == ["lambda.amazonaws.com"], str(principals))


def check_stack(clients, cf, stack_name, stack, params, copied):
    res = resources(cf, stack_name)
    lam = clients("lambda")
    bucket = params["FlagsBucket"]
    uri = f"s3://{bucket}/{params.get('FlagsPrefix', 'flags/')}{params.get('FlagsKey', 'flags.json')}"
    check("the flags object the functions read is the one docs/lambda.md uploads",
          (bucket, uri.split("/", 3)[3]) in copied, uri)
    arch = params.get("Architecture", "x86_64")

    template = load_template()
    layers = lam.list_layers()["Layers"]
    check("one layer created", "ExtensionLayer" in res and len(layers) == 1, str(layers))
    layer_arn = layers[0]["LatestMatchingVersion"]["LayerVersionArn"]
    layer = lam.get_layer_version(LayerName=layers[0]["LayerName"],
                                  VersionNumber=layers[0]["LatestMatchingVersion"]["Version"])
    declared_layer = template["Resources"]["ExtensionLayer"]["Properties"]
    if layers[0]["LayerName"] != f"{stack_name}-flagpole-extension" or not layer.get("CompatibleArchitectures"):
        # moto 5.2 names a layer made by CloudFormation by its resource name and drops
        # CompatibleArchitectures.
        note("the layer's LayerName and CompatibleArchitectures (moto's CloudFormation ignores "
             "both): checked in the template")
        layer["CompatibleArchitectures"] = [{"!Ref": "Architecture"} == declared_layer["CompatibleArchitectures"][0] and arch]
    check("layer name is per stack (template)", declared_layer["LayerName"] == {"!Sub": "${AWS::StackName}-flagpole-extension"})
    # moto 5.2 resolves !Ref of a LayerVersion to a Python repr, not the version's ARN (and
    # gives it no physical id); where it does, the reference is checked in the template.
    moto_layer_ref = res["ExtensionLayer"].get("PhysicalResourceId") != layer_arn
    if moto_layer_ref:
        note("!Ref of AWS::Lambda::LayerVersion (moto 5.2 yields a Python repr, not the ARN): the "
             "example function's Layers and the ExtensionLayerArn output are checked as !Ref "
             "ExtensionLayer in the template")
    check(f"layer: architectures [{arch}], provided.al2023 among its runtimes",
          layer.get("CompatibleArchitectures") == [arch] and "provided.al2023" in layer.get("CompatibleRuntimes", []),
          str((layer.get("CompatibleArchitectures"), layer.get("CompatibleRuntimes"))))
    zip_key = (params["ArtifactBucket"], params.get("LayerZipKey", "flagpole-extension-x86_64.zip"))
    if zip_key in copied:
        check("layer content is the uploaded layer zip (size)",
              layer["Content"]["CodeSize"] == copied[zip_key].stat().st_size,
              f"{layer['Content']['CodeSize']} != {copied[zip_key].stat().st_size}")

    example = lam.get_function(FunctionName=res["ExampleFunction"]["PhysicalResourceId"])["Configuration"]
    env = example.get("Environment", {}).get("Variables", {})
    layers = [l["Arn"] for l in example.get("Layers", [])]
    if moto_layer_ref:
        declared = template["Resources"]["ExampleFunction"]["Properties"]["Layers"]
        check("example function's one layer is declared as !Ref ExtensionLayer (template)",
              declared == [{"!Ref": "ExtensionLayer"}], str(declared))
    else:
        check("example function has the stack's layer", layers == [layer_arn], str(layers))
    check("example function: python3.12, index.handler",
          example["Runtime"] == "python3.12" and example["Handler"] == "index.handler",
          str((example["Runtime"], example["Handler"])))
    check(f"example function: FLAGD_URI={uri}, FLAGD_LAMBDA_MAX_AGE={params.get('MaxAge', '5s')}",
          env.get("FLAGD_URI") == uri and env.get("FLAGD_LAMBDA_MAX_AGE") == params.get("MaxAge", "5s"), str(env))
    check(f"example function: architecture {arch}", example.get("Architectures") == [arch], str(example.get("Architectures")))
    example_role = example["Role"].split("/")[-1]
    check("example function runs as ExampleFunctionRole", example_role == res["ExampleFunctionRole"]["PhysicalResourceId"])
    check_role(clients, example_role, "example function", params, template, "ExampleFunctionRole")

    function = lam.get_function(FunctionName=res["FlagsFunction"]["PhysicalResourceId"])
    config = function["Configuration"]
    env = config.get("Environment", {}).get("Variables", {})
    check("flags function: provided.al2023, handler bootstrap, no layer",
          (config["Runtime"], config["Handler"], config.get("Layers", [])) == ("provided.al2023", "bootstrap", []),
          str((config["Runtime"], config["Handler"], config.get("Layers"))))
    check("flags function: FLAGD_URI, FLAGD_LAMBDA_MAX_AGE, FLAGD_CORS_ORIGIN as the parameters, JSON logs",
          env == {"FLAGD_URI": uri, "FLAGD_LAMBDA_MAX_AGE": params.get("MaxAge", "5s"),
                  "FLAGD_CORS_ORIGIN": params.get("CorsOrigin", "*"), "FLAGD_LOG_FORMAT": "json"}, str(env))
    zip_key = (params["ArtifactBucket"], params.get("FunctionZipKey", "flagpole-function-x86_64.zip"))
    if zip_key in copied:
        check("flags function code is the uploaded function zip (size)",
              config["CodeSize"] == copied[zip_key].stat().st_size, f"{config['CodeSize']}")
    function_role = config["Role"].split("/")[-1]
    check("flags function runs as FlagsFunctionRole", function_role == res["FlagsFunctionRole"]["PhysicalResourceId"])
    check("the two shapes have two different roles", function_role != example_role)
    check_role(clients, function_role, "flags function", params, template, "FlagsFunctionRole")

    # The Function URL: moto's CloudFormation has no AWS::Lambda::Url; created through the
    # Lambda API with the template's properties, as CloudFormation would.
    url_props = template["Resources"]["FlagsFunctionUrl"]["Properties"]
    check("FlagsFunctionUrl targets FlagsFunction with AuthType FunctionUrlAuthType (template)",
          url_props == {"TargetFunctionArn": {"!GetAtt": "FlagsFunction.Arn"}, "AuthType": {"!Ref": "FunctionUrlAuthType"}},
          str(url_props))
    auth = params.get("FunctionUrlAuthType", "AWS_IAM")
    if "FlagsFunctionUrl" not in res:
        lam.create_function_url_config(FunctionName=config["FunctionArn"], AuthType=auth)
    url = lam.get_function_url_config(FunctionName=config["FunctionArn"])
    check(f"Function URL with AuthType {auth}", url["AuthType"] == auth and url["FunctionUrl"].startswith("https://"),
          str(url.get("AuthType")))
    statements = []
    try:
        statements = json.loads(lam.get_policy(FunctionName=config["FunctionArn"])["Policy"])["Statement"]
    except lam.exceptions.ResourceNotFoundException:
        pass
    public = [s for s in statements if "InvokeFunctionUrl" in str(s.get("Action"))]
    check(f"public InvokeFunctionUrl permission {'present' if auth == 'NONE' else 'absent'}",
          bool(public) == (auth == "NONE") and all(s.get("Principal") in ("*", {"AWS": "*"}) for s in public),
          str(public))
    if public:
        declared = template["Resources"]["PublicUrlPermission"]["Properties"]
        check("the public permission is limited to URL calls with AuthType NONE (template)",
              declared.get("FunctionUrlAuthType") == "NONE" and declared["Action"] == "lambda:InvokeFunctionUrl")

    out = common.outputs(stack)
    layer_output = (template["Outputs"]["ExtensionLayerArn"]["Value"] == {"!Ref": "ExtensionLayer"}
                    if moto_layer_ref else out.get("ExtensionLayerArn") == layer_arn)
    check("outputs: ExtensionLayerArn, ExampleFunctionName, FlagsFunctionName",
          layer_output and out.get("ExampleFunctionName") == example["FunctionName"]
          and out.get("FlagsFunctionName") == config["FunctionName"], str(out))
    if "FunctionUrl" not in out:
        note("the FunctionUrl and HttpApiEndpoint outputs (they name resources moto does not create)")

    with_api = params.get("CreateHttpApi") == "true"
    existing = common.effective_resources(template, params)
    check(f"CreateHttpApi={params.get('CreateHttpApi', 'false')}: HttpApi and its invoke permission "
          f"{'in' if with_api else 'not in'} the stack",
          ("HttpApi" in existing and "HttpApiPermission" in existing) == with_api)
    if with_api:
        api = template["Resources"]["HttpApi"]["Properties"]
        check("HttpApi: HTTP protocol, quick-create target FlagsFunction (payload 2.0) (template)",
              api["ProtocolType"] == "HTTP" and api["Target"] == {"!GetAtt": "FlagsFunction.Arn"})
        perm = template["Resources"]["HttpApiPermission"]["Properties"]
        check("HttpApiPermission: apigateway.amazonaws.com may invoke, only from this API (template)",
              perm["Principal"] == "apigateway.amazonaws.com" and "${HttpApi}/*" in perm["SourceArn"]["!Sub"])


def res_function(cf, stack_name):
    return resources(cf, stack_name)["FlagsFunction"]["PhysicalResourceId"]


def try_invoke(clients, function):
    """moto runs a function's code in a Docker container: says what happened when asked to."""
    from botocore.config import Config

    lam = boto3.client("lambda", endpoint_url=clients("lambda").meta.endpoint_url, region_name=REGION,
                       config=Config(read_timeout=60, retries={"max_attempts": 1}))
    try:
        answer = lam.invoke(FunctionName=function, Payload=b"{}")
        detail = answer.get("FunctionError") or answer["StatusCode"]
        body = answer["Payload"].read()[:120].decode(errors="replace")
        return f"moto runs Lambda code only in Docker; asked to invoke here it answered {detail}: {body}"
    except Exception as error:  # what moto answers without a Docker engine
        return f"moto runs Lambda code only in Docker, and this machine has no Docker engine: {str(error)[:120]}"


def check_template(template):
    """What moto does not run, checked on the template itself."""
    code = template["Resources"]["ExampleFunction"]["Properties"]["Code"]["ZipFile"]
    check("example function reads OFREP from the extension on localhost:8016 (template)",
          "http://localhost:8016/ofrep/v1/evaluate/flags/" in code)
    compile(code, "index.py", "exec")
    check("example function code compiles (python)", True)
    for name in ("ExampleFunctionRole", "FlagsFunctionRole"):
        role = template["Resources"][name]["Properties"]
        check(f"{name} has no RoleName (CAPABILITY_IAM suffices, as docs/lambda.md deploys)", "RoleName" not in role)


def check_documented_parameters(section, template):
    table = re.findall(r"^\| `([A-Za-z]+)` \| ([^|]+) \|", section, re.M)
    documented = {name: default.strip() for name, default in table}
    check("docs/lambda.md documents every parameter of the template and no other",
          sorted(documented) == sorted(template["Parameters"]), str(sorted(set(documented) ^ set(template["Parameters"]))))
    for name, default in documented.items():
        spec = template["Parameters"].get(name, {})
        want = "(required)" if "Default" not in spec else f"`{spec['Default']}`"
        check(f"docs/lambda.md: {name} default {default}", default == want, f"template: {want}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--zips", default=str(ROOT / "target/lambda"),
                        help="where scripts/package-lambda wrote the zips (default target/lambda)")
    args = parser.parse_args()
    started = time.time()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    zips = Path(args.zips)
    server, endpoint = common.start_moto()
    print(f"moto on {endpoint}", flush=True)

    def clients(name):
        return boto3.client(name, endpoint_url=endpoint, region_name=REGION)

    try:
        with tempfile.TemporaryDirectory() as work:
            run(clients, zips, Path(work))
    except Exception as error:  # a crash is a failure, reported with the rest
        import traceback

        traceback.print_exc()
        check("the test ran to the end", False, repr(error))
    finally:
        server.stop()
        print("moto cannot model (checked otherwise or not at all):")
        if common.unsupported_types:
            print("  - resource types moto's CloudFormation does not create (checked in the template): "
                  + ", ".join(sorted(common.unsupported_types)))
        for what in common.unmodelled:
            print(f"  - {what}")
        print(f"lambda_stack: {time.time() - started:.1f}s")
        print(f"{common.passed} passed, {common.failed} failed")
    sys.exit(1 if common.failed else 0)


def run(clients, zips, work):
    check_zip(zips / "flagpole-extension-x86_64.zip", "extensions/flagpole")
    check_zip(zips / "flagpole-function-x86_64.zip", "bootstrap")
    template = load_template()
    section = deploy_section(WALKTHROUGH.read_text())
    check("docs/lambda.md has a Deploy (CloudFormation) section", bool(section))
    check_documented_parameters(section, template)
    check_template(template)
    blocks = common.shell_blocks(section)
    variables = variables_of(blocks)
    copied = run_s3_commands(blocks, variables, clients, zips, work)
    commands = common.deploy_commands(blocks)
    check("docs/lambda.md deploys the stack twice (then a public URL and the HTTP API)", len(commands) == 2, str(len(commands)))
    cf = clients("cloudformation")
    previous = {}
    for stack_name, path, overrides, words in commands:
        check(f"deploy names deploy/aws/lambda.yaml with CAPABILITY_IAM",
              path == "deploy/aws/lambda.yaml" and "CAPABILITY_IAM" in words)
        stack, params = deploy(cf, template, stack_name, overrides, variables, previous)
        if stack is None:
            return
        check_stack(clients, cf, stack_name, stack, params, copied)
        previous = params
    note(f"invoking either function ({try_invoke(clients, res_function(cf, commands[-1][0]))}): "
         "tests/lambda_extension.rs and tests/lambda_function.rs run the same binary under "
         "lambda-simulator instead")
    note("IAM enforcement (moto stores the policies and does not enforce them): the policies are "
         "checked as documents")


if __name__ == "__main__":
    main()
