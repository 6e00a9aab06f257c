"""The API Gateway WebSocket API: authorizer, routes, integrations, stage, access logs.

Routes and the authorizer's identity source come from `functions.contract`, which the local
gateway reads too, so both gateways route the same keys to the same handlers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from functions import contract
from infra.policies import assume_role_policy
from infra.settings import StackSettings

# One JSON object per connect, message and disconnect: enough to follow a connection, and to
# tell a refused handshake (authorizer) from a failing handler (integration).
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "extendedRequestId": "$context.extendedRequestId",
        "requestTime": "$context.requestTimeEpoch",
        "ip": "$context.identity.sourceIp",
        "connectionId": "$context.connectionId",
        "routeKey": "$context.routeKey",
        "eventType": "$context.eventType",
        "messageId": "$context.messageId",
        "status": "$context.status",
        "errorMessage": "$context.error.message",
        "errorResponseType": "$context.error.responseType",
        "authorizeError": "$context.authorize.error",
        "authorizerError": "$context.authorizer.error",
        "integrationError": "$context.integration.error",
        "integrationStatus": "$context.integration.status",
        "integrationLatency": "$context.integration.latency",
    }
)
API_GATEWAY_LOGS_POLICY = "AmazonAPIGatewayPushToCloudWatchLogs"
LAMBDA_INVOKE = "lambda:InvokeFunction"


@dataclass(frozen=True)
class ApiGatewayAccount:
    """The region-wide API Gateway setting naming the role that writes CloudWatch logs."""

    role: aws.iam.Role
    attachment: aws.iam.RolePolicyAttachment
    account: aws.apigateway.Account


@dataclass(frozen=True)
class WebSocketApi:
    api: aws.apigatewayv2.Api
    authorizer: aws.apigatewayv2.Authorizer
    integrations: dict[str, aws.apigatewayv2.Integration]  # by route key
    routes: dict[str, aws.apigatewayv2.Route]  # by route key
    route_responses: dict[str, aws.apigatewayv2.RouteResponse]  # by route key (two-way only)
    access_log_group: aws.cloudwatch.LogGroup
    stage: aws.apigatewayv2.Stage
    permissions: dict[str, aws.lambda_.Permission]  # by handler
    account: ApiGatewayAccount | None

    @property
    def websocket_url(self) -> pulumi.Output[str]:
        """wss://{apiId}.execute-api.{region}.amazonaws.com/{stage}"""
        return pulumi.Output.concat(self.api.api_endpoint, "/", self.stage.name)

    @property
    def management_endpoint(self) -> pulumi.Output[str]:
        """https://{apiId}.execute-api.{region}.amazonaws.com/{stage} (the @connections API).

        Derived from the API's own endpoint, so the host is right in every partition.
        """
        return pulumi.Output.all(self.api.api_endpoint, self.stage.name).apply(
            lambda args: f"https://{args[0].removeprefix('wss://')}/{args[1]}"
        )


def api_gateway_account(name: str, partition: pulumi.Input[str]) -> ApiGatewayAccount:
    """The account-level CloudWatch role access logging needs (one per account and region)."""
    role = aws.iam.Role(
        f"{name}-role",
        assume_role_policy=assume_role_policy("apigateway.amazonaws.com"),
        description="Lets API Gateway write access logs to CloudWatch Logs.",
    )
    attachment = aws.iam.RolePolicyAttachment(
        f"{name}-logs",
        role=role.name,
        # AWS's managed policy for exactly this service role (API Gateway creates log groups
        # and streams of its own, whose names are not known here).
        policy_arn=pulumi.Output.concat(
            "arn:", partition, f":iam::aws:policy/service-role/{API_GATEWAY_LOGS_POLICY}"
        ),
    )
    account = aws.apigateway.Account(
        name,
        cloudwatch_role_arn=role.arn,
        opts=pulumi.ResourceOptions(depends_on=[attachment]),
    )
    return ApiGatewayAccount(role=role, attachment=attachment, account=account)


def websocket_api(
    name: str,
    *,
    settings: StackSettings,
    handlers: Mapping[str, aws.lambda_.Function],
    partition: pulumi.Input[str],
) -> WebSocketApi:
    """The API with every route of `contract.ROUTES`; `handlers` maps handler name -> function.

    `handlers` must hold the authorizer and every routed handler.
    """
    prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}"
    api = aws.apigatewayv2.Api(
        name,
        name=prefix,
        protocol_type="WEBSOCKET",
        route_selection_expression=contract.ROUTE_SELECTION_EXPRESSION,
    )
    authorizer = aws.apigatewayv2.Authorizer(
        f"{name}-authorizer",
        name=f"{prefix}-token",
        api_id=api.id,
        authorizer_type="REQUEST",
        authorizer_uri=handlers[contract.AUTHORIZER].invoke_arn,
        # A handshake without the token is refused (401) before the authorizer runs.
        identity_sources=[contract.AUTHORIZER_IDENTITY_SOURCE],
    )

    integrations: dict[str, aws.apigatewayv2.Integration] = {}
    routes: dict[str, aws.apigatewayv2.Route] = {}
    route_responses: dict[str, aws.apigatewayv2.RouteResponse] = {}
    for route in contract.ROUTES:
        integration = aws.apigatewayv2.Integration(
            f"{name}-{route.handler}-integration",
            api_id=api.id,
            integration_type="AWS_PROXY",
            # Lambda is always invoked with POST, whatever the client did.
            integration_method="POST",
            integration_uri=handlers[route.handler].invoke_arn,
        )
        is_connect = route.key == contract.CONNECT_ROUTE
        routes[route.key] = aws.apigatewayv2.Route(
            f"{name}-{route.handler}-route",
            api_id=api.id,
            route_key=route.key,
            target=pulumi.Output.concat("integrations/", integration.id),
            authorization_type="CUSTOM" if is_connect else "NONE",
            authorizer_id=authorizer.id if is_connect else None,
            # A two-way route sends the integration's return value back to the client.
            route_response_selection_expression="$default" if route.two_way else None,
        )
        if route.two_way:
            route_responses[route.key] = aws.apigatewayv2.RouteResponse(
                f"{name}-{route.handler}-route-response",
                api_id=api.id,
                route_id=routes[route.key].id,
                route_response_key="$default",
            )
        integrations[route.key] = integration

    account = (
        api_gateway_account(f"{name}-account", partition)
        if settings.manage_api_gateway_account
        else None
    )
    access_log_group = aws.cloudwatch.LogGroup(
        f"{name}-access-logs",
        name=f"/aws/apigateway/{prefix}/access",
        retention_in_days=settings.log_retention_days,
    )
    # Created after routes and integrations so its first automatic deployment holds them all;
    # access logging fails unless the account's CloudWatch role is set first.
    stage_dependencies: list[pulumi.Resource] = [
        *integrations.values(),
        *routes.values(),
        *route_responses.values(),
    ]
    if account is not None:
        stage_dependencies.append(account.account)
    stage = aws.apigatewayv2.Stage(
        f"{name}-stage",
        api_id=api.id,
        name=settings.stage_name,
        # Redeploys on every route change; a static deployment would freeze the routes.
        auto_deploy=True,
        default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
            throttling_burst_limit=settings.throttling_burst_limit,
            throttling_rate_limit=settings.throttling_rate_limit,
            # Execution logs would go to log groups API Gateway creates without retention;
            # the access log below records every request and its errors instead.
            logging_level="OFF",
            data_trace_enabled=False,
        ),
        access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
            destination_arn=access_log_group.arn,
            format=ACCESS_LOG_FORMAT,
        ),
        opts=pulumi.ResourceOptions(depends_on=stage_dependencies),
    )

    # API Gateway invokes the routed handlers and the authorizer; any stage, any route.
    source_arn = pulumi.Output.concat(api.execution_arn, "/*/*")
    invoked = [contract.AUTHORIZER, *dict.fromkeys(route.handler for route in contract.ROUTES)]
    permissions = {
        handler: aws.lambda_.Permission(
            f"{name}-{handler}-invoke",
            action=LAMBDA_INVOKE,
            function=handlers[handler].name,
            principal="apigateway.amazonaws.com",
            source_arn=source_arn,
        )
        for handler in invoked
    }
    return WebSocketApi(
        api=api,
        authorizer=authorizer,
        integrations=integrations,
        routes=routes,
        route_responses=route_responses,
        access_log_group=access_log_group,
        stage=stage,
        permissions=permissions,
        account=account,
    )
