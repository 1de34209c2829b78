//! `connector policy`: the IAM permission policy, trust policy and role name of a connector's source role (also
//! printed by `create` and, for the trust policy, by `reauth --rotate-external-id`).

use std::process::ExitCode;

use anyhow::{Context, Result};
use s3_importer_core::policy::{self, PermissionScope};
use s3_importer_core::sync::Connector;
use serde_json::{json, Value};

use super::{find, Deployment};
use crate::aws_args::AwsArgs;
use crate::exit::{exit, Status};

/// Runs `connector policy`: prints the policies of connector `name` again.
pub(super) async fn policy(
    deployment: Deployment<'_>,
    name: &str,
    kms_key_arn: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let Deployment { aws, sdk, state } = deployment;
    let connector = find(state, name).await?;
    let p = policies(aws, sdk, &connector, kms_key_arn).await?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&policies_json(&connector, &p))?
        );
    } else {
        print_policies(&connector, &p, aws.role_name_prefix())?;
        if let Some(id) = &connector.source.external_id {
            outln!("External ID: {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `create` and `policy` print: the documents and the role to create.
pub struct Policies {
    /// The role name to create in the bucket's account.
    pub role_name: String,
    /// Its ARN.
    pub role_arn: String,
    /// The permission policy.
    pub permission: Value,
    /// The trust policy.
    pub trust: Value,
    /// The trust policy's principals, and whether they are the deployment's roles (else the account root).
    pub principals: Vec<String>,
    /// True when the principals are the deployment's lister and worker roles.
    pub exact_principals: bool,
}

async fn principals(aws: &AwsArgs, sdk: &aws_config::SdkConfig) -> Result<(Vec<String>, bool)> {
    if let Some(given) = given_principals(
        aws.lister_role_arn.as_deref(),
        aws.worker_role_arn.as_deref(),
    )? {
        return Ok((given, true));
    }
    // Without the deployment's roles, trust the deployment's account (narrow it with --stack).
    let identity = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .context("cannot tell the deployment's account (sts:GetCallerIdentity); pass --stack or --lister-role-arn and --worker-role-arn")?;
    let account = identity
        .account()
        .context("sts:GetCallerIdentity returned no account")?;
    let region = sdk
        .region()
        .map(|r| r.as_ref().to_owned())
        .unwrap_or_default();
    Ok((
        vec![format!(
            "arn:{}:iam::{account}:root",
            policy::partition(&region)
        )],
        false,
    ))
}

/// The deployment's roles as given: both, or neither (then `None`); one alone would yield a trust policy the
/// other function cannot use.
fn given_principals(lister: Option<&str>, worker: Option<&str>) -> Result<Option<Vec<String>>> {
    match (lister, worker) {
        (None, None) => Ok(None),
        (Some(lister), Some(worker)) => {
            for arn in [lister, worker] {
                policy::validate_role_arn(arn)?;
            }
            Ok(Some(vec![lister.to_owned(), worker.to_owned()]))
        }
        _ => Err(exit(
            Status::Usage,
            "pass both --lister-role-arn and --worker-role-arn (or --stack): the trust policy must name both \
             of the deployment's roles",
        )),
    }
}

/// The policies of `connector`.
pub async fn policies(
    aws: &AwsArgs,
    sdk: &aws_config::SdkConfig,
    connector: &Connector,
    kms_key_arn: Option<&str>,
) -> Result<Policies> {
    let source = &connector.source;
    let (role_name, role_arn) = match &source.role_arn {
        Some(arn) => (policy::validate_role_arn(arn)?.to_owned(), arn.clone()),
        None => {
            let name = policy::role_name(aws.role_name_prefix(), &connector.name)?;
            let arn = policy::role_arn(&source.region, &source.account_id, &name);
            (name, arn)
        }
    };
    if let Some(key) = kms_key_arn {
        policy::validate_kms_key_arn(key)?;
    }
    let permission = policy::permission_policy(&PermissionScope {
        bucket: &source.bucket,
        region: &source.region,
        folder: source.prefix.as_deref(),
        kms_key_arn,
        notifications: connector.discovery == s3_importer_core::sync::Discovery::Events,
        versions: source.versions,
    });
    let (principals, exact_principals) = principals(aws, sdk).await?;
    let external_id = source.external_id.clone().unwrap_or_default();
    let trust = policy::trust_policy(&principals, &external_id);
    for document in [&permission, &trust] {
        policy::check_policy_document(document)
            .map_err(|e| anyhow::anyhow!("internal error: generated an invalid policy: {e}"))?;
    }
    Ok(Policies {
        role_name,
        role_arn,
        permission,
        trust,
        principals,
        exact_principals,
    })
}

pub(super) fn policies_json(connector: &Connector, p: &Policies) -> Value {
    json!({
        "connector": connector.name,
        "role_name": p.role_name,
        "role_arn": p.role_arn,
        "external_id": connector.source.external_id,
        "permission_policy": p.permission,
        "trust_policy": p.trust,
    })
}

pub(super) fn print_policies(connector: &Connector, p: &Policies, prefix: &str) -> Result<()> {
    let account = &connector.source.account_id;
    outln!(
        "In account {account}, create the IAM role {} with:",
        p.role_name
    );
    outln!();
    outln!("Permission policy (what the role may read):");
    outln!("{}", serde_json::to_string_pretty(&p.permission)?);
    outln!();
    outln!("Trust policy (who may assume the role, with the External ID):");
    outln!("{}", serde_json::to_string_pretty(&p.trust)?);
    outln!();
    if !p.exact_principals {
        outln!(
            "note: the trust policy names the deployment's account ({}); pass --stack NAME (or --lister-role-arn \
             and --worker-role-arn) to name only its lister and worker roles",
            p.principals.join(", ")
        );
    }
    if !p.role_name.starts_with(prefix) {
        outln!(
            "note: the role name does not start with {prefix:?}; the deployment may only assume roles whose \
             names do"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_deployment_role_alone_is_refused() {
        let l = "arn:aws:iam::123456789012:role/l";
        let w = "arn:aws:iam::123456789012:role/w";
        assert!(given_principals(Some(l), None).is_err());
        assert!(given_principals(None, Some(w)).is_err());
        assert_eq!(given_principals(None, None).unwrap(), None);
        assert_eq!(
            given_principals(Some(l), Some(w)).unwrap(),
            Some(vec![l.to_owned(), w.to_owned()])
        );
    }
}
