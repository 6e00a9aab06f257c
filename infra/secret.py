"""The JWT signing key as an SSM SecureString; the authorizer receives only its name."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from functions import contract


def jwt_secret_parameter(
    resource_name: str, jwt_secret: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None
) -> aws.ssm.Parameter:
    """SecureString under the contract's name for this project and stack.

    No key_id: SSM encrypts with the AWS-managed `aws/ssm` key, whose key policy lets any
    principal of the account use it through SSM, so readers need ssm:GetParameter only.
    `jwt_secret` is a secret Output (config `require_secret`); Pulumi keeps it encrypted in
    state and the provider marks the parameter's `value` output secret as well.
    """
    return aws.ssm.Parameter(
        resource_name,
        name=contract.jwt_secret_parameter_name(pulumi.get_project(), pulumi.get_stack()),
        type="SecureString",
        value=pulumi.Output.secret(jwt_secret),
        description="HS256 key the WebSocket authorizer verifies client tokens with.",
        opts=opts,
    )
