"""The WebSocket API as API Gateway receives it: routes, authorizer, integrations, stage."""

from __future__ import annotations

import json

import pytest

from functions import contract
from infra.api import ACCESS_LOG_FORMAT
from tests.infra.conftest import ACCOUNT, API_ID, PROJECT, REGION, STACK, deploy

API = "aws:apigatewayv2/api:Api"
ROUTE = "aws:apigatewayv2/route:Route"
INTEGRATION = "aws:apigatewayv2/integration:Integration"
FUNCTION = "aws:lambda/function:Function"
EXECUTION_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}"


def invoke_arn(handler: str) -> str:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{PROJECT}-{STACK}-{handler}"
    return f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations"


def test_api_is_websocket_with_the_contract_route_selection() -> None:
    deployed = deploy()
    (api,) = deployed.all(API).values()
    assert api.inputs["protocolType"] == "WEBSOCKET"
    assert api.inputs["routeSelectionExpression"] == contract.ROUTE_SELECTION_EXPRESSION


def test_request_authorizer_guards_connect_only() -> None:
    deployed = deploy()
    (authorizer,) = deployed.all("aws:apigatewayv2/authorizer:Authorizer").values()
    assert authorizer.inputs["apiId"] == API_ID
    assert authorizer.inputs["authorizerType"] == "REQUEST"
    assert authorizer.inputs["identitySources"] == [contract.AUTHORIZER_IDENTITY_SOURCE]
    assert authorizer.inputs["authorizerUri"] == invoke_arn(contract.AUTHORIZER)

    routes = {r.inputs["routeKey"]: r.inputs for r in deployed.all(ROUTE).values()}
    assert set(routes) == {route.key for route in contract.ROUTES}
    connect = routes[contract.CONNECT_ROUTE]
    assert connect["authorizationType"] == "CUSTOM"
    assert connect["authorizerId"] == f"{authorizer.name}-id"
    for key, inputs in routes.items():
        if key != contract.CONNECT_ROUTE:
            assert inputs["authorizationType"] == "NONE"
            assert "authorizerId" not in inputs


def test_each_route_proxies_to_its_handler_with_post() -> None:
    deployed = deploy()
    integrations = deployed.all(INTEGRATION)
    routes = {r.inputs["routeKey"]: r.inputs for r in deployed.all(ROUTE).values()}
    for route in contract.ROUTES:
        name = f"websocket-{route.handler}-integration"
        integration = integrations[name].inputs
        assert integration == {
            "apiId": API_ID,
            "integrationType": "AWS_PROXY",
            "integrationMethod": "POST",
            "integrationUri": invoke_arn(route.handler),
        }
        assert routes[route.key]["target"] == f"integrations/{name}-id"
        assert routes[route.key]["apiId"] == API_ID
    assert len(integrations) == len(contract.ROUTES)


def test_two_way_routes_have_a_default_route_response() -> None:
    deployed = deploy()
    routes = deployed.all(ROUTE)
    responses = deployed.all("aws:apigatewayv2/routeResponse:RouteResponse")
    two_way = [route for route in contract.ROUTES if route.two_way]
    assert two_way, "the contract answers pings through a two-way route"
    assert len(responses) == len(two_way)
    for route in contract.ROUTES:
        inputs = routes[f"websocket-{route.handler}-route"].inputs
        if route.two_way:
            assert inputs["routeResponseSelectionExpression"] == "$default"
            response = responses[f"websocket-{route.handler}-route-response"].inputs
            assert response == {
                "apiId": API_ID,
                "routeId": f"websocket-{route.handler}-route-id",
                "routeResponseKey": "$default",
            }
        else:
            assert "routeResponseSelectionExpression" not in inputs


def test_stage_auto_deploys_with_configured_throttling_and_access_logs() -> None:
    deployed = deploy(
        {
            "stageName": "prod",
            "throttlingBurstLimit": "123",
            "throttlingRateLimit": "45.5",
            "logRetentionDays": "30",
        }
    )
    (stage,) = deployed.all("aws:apigatewayv2/stage:Stage").values()
    assert stage.inputs["apiId"] == API_ID
    assert stage.inputs["name"] == "prod"
    assert stage.inputs["autoDeploy"] is True
    route_settings = stage.inputs["defaultRouteSettings"]
    assert route_settings["throttlingBurstLimit"] == 123
    assert route_settings["throttlingRateLimit"] == 45.5

    log_group = deployed.one("aws:cloudwatch/logGroup:LogGroup", "websocket-access-logs")
    assert log_group.inputs["retentionInDays"] == 30
    access = stage.inputs["accessLogSettings"]
    assert access["destinationArn"] == log_group.outputs["arn"]
    assert access["format"] == ACCESS_LOG_FORMAT
    logged = json.loads(access["format"])
    for key in (
        "requestId",
        "ip",
        "connectionId",
        "routeKey",
        "eventType",
        "status",
        "errorMessage",
        "authorizerError",
        "integrationError",
        "integrationLatency",
    ):
        assert logged[key].startswith("$context."), key


def test_account_logging_role_is_managed_by_default() -> None:
    deployed = deploy()
    (account,) = deployed.all("aws:apigateway/account:Account").values()
    role = deployed.one("aws:iam/role:Role", "websocket-account-role")
    assert account.inputs["cloudwatchRoleArn"] == role.outputs["arn"]
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "apigateway.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    (attachment,) = deployed.all("aws:iam/rolePolicyAttachment:RolePolicyAttachment").values()
    assert attachment.inputs == {
        "role": role.outputs["name"],
        "policyArn": "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
    }


def test_account_logging_role_can_be_left_to_someone_else() -> None:
    deployed = deploy({"manageApiGatewayAccount": "false"})
    assert deployed.all("aws:apigateway/account:Account") == {}
    assert deployed.all("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == {}
    assert "websocket-account-role" not in deployed.all("aws:iam/role:Role")
    assert deployed.all("aws:apigatewayv2/stage:Stage")  # the stage is still there


@pytest.mark.parametrize(
    "handler", [contract.AUTHORIZER, contract.CONNECT, contract.DISCONNECT, contract.DEFAULT]
)
def test_api_gateway_may_invoke_routed_handlers_and_authorizer(handler: str) -> None:
    deployed = deploy()
    permission = deployed.one("aws:lambda/permission:Permission", f"websocket-{handler}-invoke")
    assert permission.inputs == {
        "action": "lambda:InvokeFunction",
        "function": f"{PROJECT}-{STACK}-{handler}",
        "principal": "apigateway.amazonaws.com",
        "sourceArn": f"{EXECUTION_ARN}/*/*",
    }


def test_only_the_expected_invoke_permissions_exist() -> None:
    deployed = deploy()
    permissions = deployed.all("aws:lambda/permission:Permission")
    assert {p.inputs["function"].rsplit("-", 1)[1] for p in permissions.values()} == set(
        contract.HANDLERS
    )
    by_principal = {p.inputs["principal"] for p in permissions.values()}
    assert by_principal == {"apigateway.amazonaws.com", "sns.amazonaws.com"}
    assert len(permissions) == len(contract.HANDLERS)
