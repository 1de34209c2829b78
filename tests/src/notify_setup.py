"""Routes a bucket's S3 events to a queue on the emulator through SNS or EventBridge (events_e2e.rs).

The Rust SDK crates for SNS and EventBridge are not dependencies of this workspace; boto3 comes with the
emulator's virtualenv. Usage: notify_setup.py sns|sns-raw|eventbridge BUCKET QUEUE_ARN PREFIX NAME
(the AWS_ENDPOINT_URL, credentials and region come from the environment).
"""

import json
import sys

import boto3


def main() -> None:
    mode, bucket, queue_arn, prefix, name = sys.argv[1:6]
    s3 = boto3.client("s3")
    if mode in ("sns", "sns-raw"):
        sns = boto3.client("sns")
        topic_arn = sns.create_topic(Name=name)["TopicArn"]
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true" if mode == "sns-raw" else "false"},
        )
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "TopicConfigurations": [
                    {
                        "Id": name,
                        "TopicArn": topic_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
                    }
                ]
            },
        )
    elif mode == "eventbridge":
        events = boto3.client("events")
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        pattern = {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [bucket]}},
        }
        events.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
        events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
