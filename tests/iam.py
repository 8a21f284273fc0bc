"""What each function's role in template.yaml allows, and what an AWS call needs.

template.yaml gives every function its own role from `Policies` (managed
policies, some behind conditions). Here the template is resolved as
CloudFormation would resolve it for a given set of stack parameters (Ref,
Sub, If, the conditions, pseudo parameters), and a request is evaluated the
way IAM evaluates an identity policy: allowed when an Allow statement's
action, resource and conditions all match, and no Deny does.

`needs(call)` turns a recorded botocore call into the (action, resource,
context) requests IAM will check, including the one AWS makes on the
function's behalf: decrypting with a customer managed KMS key
(SecretsKmsKeyArn) when SSM or Secrets Manager reads a value encrypted with
it. tests/aws_calls.py records the calls; tests/unit/test_iam.py holds every
function to its role.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

ROOT = Path(__file__).resolve().parents[1]

# Which stack parameter holds each secret's reference (shared/secrets.py SECRET_NAMES).
SECRET_PARAMETER = {
    "DATABASE_URL": "DatabaseUrlRef",
    "SUPABASE_SERVICE_ROLE_KEY": "ServiceRoleKeyRef",
    "SUPABASE_JWT_SECRET": "SupabaseJwtSecretRef",
    "LIVEKIT_API_SECRET": "LiveKitApiSecretRef",
    "VAPID_PRIVATE_KEY": "VapidPrivateKeyRef",
}
# Values for the parameters a test does not care about (they only have to pass AllowedPattern).
PLACEHOLDERS = {
    "Stage": "test",
    "CorsAllowedOrigins": ["https://app.example"],
    "SupabaseUrl": "https://project.supabase.co",
    "LiveKitUrl": "wss://livekit.example",
    "LiveKitApiKey": "APItest",
    "VapidPublicKey": "B" * 87,
    "VapidSubject": "mailto:ops@example.com",
    "LiveKitApiSecretRef": "/nomadnexus/unset/livekit-api-secret",
    "VapidPrivateKeyRef": "/nomadnexus/unset/vapid-private-key",
}
NO_VALUE = object()


@lru_cache(maxsize=1)
def template() -> dict:
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(ROOT / "template.yaml"))


@lru_cache(maxsize=1)
def runtime() -> str:
    """Globals.Function.Runtime, e.g. python3.12."""
    return template()["Globals"]["Function"]["Runtime"]


def function_ids() -> list[str]:
    return [k for k, v in template()["Resources"].items() if v["Type"] == "AWS::Serverless::Function"]


# -- resolving the template for one set of parameters -------------------------------------------

@dataclass
class Stack:
    parameters: dict[str, Any]
    region: str = "eu-north-1"
    account: str = "123456789012"
    partition: str = "aws"
    _conditions: dict[str, bool] = field(default_factory=dict, repr=False)

    @classmethod
    def with_parameters(cls, given: Mapping[str, Any], **kw: Any) -> "Stack":
        params: dict[str, Any] = {}
        for name, spec in template()["Parameters"].items():
            if name in given:
                params[name] = given[name]
            elif "Default" in spec:
                params[name] = str(spec["Default"]) if spec.get("Type") != "CommaDelimitedList" else spec["Default"]
            else:
                params[name] = PLACEHOLDERS[name]
        unknown = set(given) - set(params)
        assert not unknown, f"not parameters of template.yaml: {unknown}"
        return cls(params, **kw)

    def ref(self, name: str) -> Any:
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": self.account, "AWS::Partition": self.partition,
                  "AWS::NoValue": NO_VALUE, "AWS::URLSuffix": "amazonaws.com"}
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in template()["Resources"]:
            return {"Resource": name}  # a resource's Ref: kept symbolic (policies are looked up by it)
        raise KeyError(f"Ref to unknown {name}")

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(template()["Conditions"][name]))
        return self._conditions[name]

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.resolve(x) for x in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if key == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(x) for x in arg)
            if key == "Fn::Or":
                return any(self.resolve(x) for x in arg)
            if key == "Fn::Select":
                index, values = arg
                return self.resolve(values)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, value = arg
                return str(self.resolve(value)).split(sep)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::GetAtt":
                return {"GetAtt": arg}
        out = {}
        for k, v in node.items():
            r = self.resolve(v)
            if r is not NO_VALUE:
                out[k] = r
        return out

    def _sub(self, arg: Any) -> str:
        import re

        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def value(m: re.Match) -> str:
            name = m.group(1)
            v = self.resolve(extra[name]) if name in extra else self.ref(name)
            if isinstance(v, dict):  # a resource's Ref (a function name): its logical id stands in
                return v.get("Resource", "?")
            return str(v)

        return re.sub(r"\$\{([^}!]+)\}", value, text)

    # -- what the template gives one function -----------------------------------------------

    def environment(self, logical_id: str) -> dict[str, str]:
        merged = dict(self.resolve(template()["Globals"]["Function"]["Environment"]["Variables"]))
        own = template()["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
        merged.update(self.resolve(own))
        return {k: v if isinstance(v, str) else str(v) for k, v in merged.items()}

    def statements(self, logical_id: str) -> list[tuple[str, dict]]:
        """(policy logical id, statement) for every statement of the function's role."""
        out: list[tuple[str, dict]] = []
        for entry in self.resolve(template()["Resources"][logical_id]["Properties"].get("Policies", [])):
            assert isinstance(entry, dict) and "Resource" in entry, f"{logical_id}: only managed policies by Ref: {entry}"
            policy_id = entry["Resource"]
            policy = template()["Resources"][policy_id]
            if "Condition" in policy and not self.condition(policy["Condition"]):
                raise AssertionError(f"{logical_id} attaches {policy_id}, which does not exist with these parameters")
            for statement in self.resolve(policy["Properties"]["PolicyDocument"]["Statement"]):
                out.append((policy_id, statement))
        return out


# -- evaluating a request against statements ---------------------------------------------------

@dataclass(frozen=True)
class Need:
    """One request IAM evaluates: an action on a resource, with its request context."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    on_behalf: bool = False  # made by SSM/Secrets Manager for the function (kms:Decrypt)

    def __str__(self) -> str:
        via = f" via {dict(self.context)['kms:ViaService']}" if self.context else ""
        return f"{self.action} on {self.resource}{via}"


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _matches(patterns: Any, value: str, ignore_case: bool = False) -> bool:
    for pattern in _listed(patterns):
        if ignore_case:
            pattern, value_ = pattern.lower(), value.lower()
        else:
            value_ = value
        # IAM wildcards: * any run, ? one character (fnmatch's [] has no meaning in IAM).
        if fnmatch.fnmatchcase(value_, pattern.replace("[", "[[]")):
            return True
    return False


def _conditions_hold(condition: Mapping[str, Mapping[str, Any]] | None, context: Mapping[str, str]) -> bool:
    for operator, tests in (condition or {}).items():
        for key, expected in tests.items():
            actual = context.get(key)
            if operator == "StringEquals":
                ok = actual is not None and actual in _listed(expected)
            elif operator == "StringLike":
                ok = actual is not None and _matches(expected, actual)
            else:
                raise AssertionError(f"condition operator {operator} is not evaluated here; add it")
            if not ok:
                return False
    return True


def statement_allows(statement: Mapping[str, Any], need: Need) -> bool:
    return (_matches(statement["Action"], need.action, ignore_case=True)
            and _matches(statement["Resource"], need.resource)
            and _conditions_hold(statement.get("Condition"), dict(need.context)))


def allowed(statements: Iterable[tuple[str, dict]], need: Need) -> list[tuple[str, dict]]:
    """The Allow statements that grant `need`; empty when refused (or a Deny matches)."""
    matching = [(p, s) for p, s in statements if statement_allows(s, need)]
    if any(s.get("Effect") == "Deny" for _, s in matching):
        return []
    return [(p, s) for p, s in matching if s.get("Effect") == "Allow"]


def grants(statements: Iterable[tuple[str, dict]]) -> set[tuple[str, str, str]]:
    """Every (policy, action, resource) an Allow statement grants: what a call can use."""
    out = set()
    for policy, s in statements:
        if s.get("Effect") == "Allow":
            for action in _listed(s["Action"]):
                for resource in _listed(s["Resource"]):
                    out.add((policy, action, resource))
    return out


def used_grants(statements: Iterable[tuple[str, dict]], need: Need) -> set[tuple[str, str, str]]:
    return {(p, a, r) for p, s in allowed(statements, need)
            for a in _listed(s["Action"]) for r in _listed(s["Resource"])
            if _matches(a, need.action, ignore_case=True) and _matches(r, need.resource)}


# -- from a recorded call to what IAM checks ---------------------------------------------------

@dataclass
class Call:
    """One AWS API call as botocore made it (tests/aws_calls.py)."""

    service: str             # botocore's service name: ssm, secretsmanager
    operation: str           # GetParameters
    params: dict
    region: str
    account: str
    env_refs: dict[str, tuple[str, str]]   # NAME -> (kind, reference) in effect when it was made
    function: str | None = None            # the JsonApp name on the stack, when there is one
    keys: dict[str, str] = field(default_factory=dict)  # resource -> KMS key ARN it is encrypted with
    where: str = ""                        # the test that made it


IAM_PREFIX = {"ssm": "ssm", "secretsmanager": "secretsmanager", "kms": "kms"}


def ssm_parameter_arn(name: str, call: Call) -> str:
    if name.startswith("arn:"):
        return name
    name = name.split(":", 1)[0]  # a version or label selector (/p:3) is not part of the resource
    return f"arn:aws:ssm:{call.region}:{call.account}:parameter{name if name.startswith('/') else '/' + name}"


def needs(call: Call) -> list[Need]:
    action = f"{IAM_PREFIX.get(call.service, call.service)}:{call.operation}"
    out: list[Need] = []
    if call.service == "ssm" and call.operation in ("GetParameters", "GetParameter"):
        names = call.params.get("Names") or [call.params.get("Name")]
        resources = [ssm_parameter_arn(n, call) for n in names]
    elif call.service == "secretsmanager" and call.operation == "GetSecretValue":
        secret = call.params["SecretId"]
        resources = [secret if secret.startswith("arn:") else
                     f"arn:aws:secretsmanager:{call.region}:{call.account}:secret:{secret}-??????"]
    else:
        resources = ["*"]
    for resource in resources:
        out.append(Need(action, resource))
        key = call.keys.get(resource)
        if key:
            out.append(Need("kms:Decrypt", key, (("kms:ViaService", f"{call.service}.{call.region}.amazonaws.com"),),
                            on_behalf=True))
    return out


def stack_for(call: Call) -> Stack:
    """The stack parameters a deployment making this call has: its references, its KMS key."""
    given: dict[str, Any] = {SECRET_PARAMETER[name]: ref for name, (_, ref) in call.env_refs.items()}
    keys = set(call.keys.values())
    assert len(keys) <= 1, f"secrets under several customer managed keys: {keys}; SecretsKmsKeyArn holds one"
    if keys:
        given["SecretsKmsKeyArn"] = keys.pop()
    return Stack.with_parameters(given, region=call.region, account=call.account)


def secret_refs(environment: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    from shared.secrets import references

    return references(environment)


def candidates(call: Call, stack: Stack) -> list[str]:
    """The functions that, deployed with these parameters, have exactly the references this call was made under.

    A function reads every secret its environment references (shared/config.py),
    so these are the functions that make this call. The JsonApp on the stack,
    when there is one, narrows it to that function.
    """
    out = []
    for logical_id in function_ids():
        refs = secret_refs(stack.environment(logical_id))
        if refs != call.env_refs:
            continue
        if call.function and function_name(logical_id) != call.function:
            continue
        out.append(logical_id)
    return out


def function_name(logical_id: str) -> str:
    """The runbook name: FunctionName is nomadnexus-${Stage}-<name>."""
    props = template()["Resources"][logical_id]["Properties"]
    return props["FunctionName"]["Fn::Sub"].split("${Stage}-", 1)[1]


@dataclass
class Verdict:
    call: Call
    checked: list[str]                                     # functions it was checked against
    refused: list[tuple[str, Need]]                        # (function, need) the role would refuse
    used: set[tuple[str, str, str, str]]                   # (function, policy, action, resource)


def check(call: Call) -> Verdict:
    stack = stack_for(call)
    checked = candidates(call, stack)
    refused: list[tuple[str, Need]] = []
    used: set[tuple[str, str, str, str]] = set()
    for logical_id in checked:
        statements = stack.statements(logical_id)
        for need in needs(call):
            grant = used_grants(statements, need)
            if not grant:
                refused.append((logical_id, need))
            used |= {(logical_id, *g) for g in grant}
    return Verdict(call, checked, refused, used)
