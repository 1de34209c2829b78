"""Translate the SAM template to plain CloudFormation JSON, offline (no AWS call), on stdout.

Usage: .venv-deploy/bin/python infra/deploy/translate.py [template.yaml]

The template-to-code agreement test (tests/tests/deploy_template.rs) reads the result: the functions, roles,
queues and tables exactly as CloudFormation would receive them after `sam deploy`.
"""

import json
import os
import sys

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from samcli.yamlhelper import yaml_parse  # noqa: E402
from samtranslator.translator.transform import transform  # noqa: E402


class NoManagedPolicies:
    """The template attaches no AWS managed policy by name, so none needs looking up in IAM."""

    def load(self):
        return {}


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "template.yaml"
    with open(path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    # `sam package` uploads each function's local CodeUri and puts its S3 location in its place; do the same
    # with a placeholder location, as nothing is uploaded here.
    for logical_id, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            if not props["CodeUri"].startswith("s3://"):
                props["CodeUri"] = f"s3://packaged-artifacts/{logical_id}.zip"
    translated = transform(template, {}, NoManagedPolicies())
    json.dump(translated, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
