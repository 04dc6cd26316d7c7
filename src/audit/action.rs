//! The actions an audit event and a policy decision name: one per operation of
//! docs/API.md. Stable strings: auditors filter on them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    CreateKey,
    ListKeys,
    GetKey,
    UpdateKey,
    ScheduleKeyDeletion,
    CancelKeyDeletion,
    RotateKey,
    ImportKeyPlaintext,
    ImportKeyWrapped,
    ExportKey,
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    ReEncrypt,
    GenerateDataKey,
    WrapKey,
    UnwrapKey,
    ReadAudit,
    VerifyAudit,
    ReadComplianceReport,
    CreateToken,
    ReadToken,
    RevokeToken,
    WhoAmI,
    ReloadPolicies,
    ReadKek,
    RotateKek,
    RetireKek,
    CreateCredential,
    ImportCredential,
    ListCredentials,
    GetCredential,
    UpdateCredential,
    DeleteCredential,
    ReadCredentialActivity,
    VerifySigV4,
    DeriveSigningKey,
    CreateApiKey,
    GetApiKey,
    UpdateApiKey,
    RevokeApiKey,
    RerollApiKey,
    ReadApiKeyActivity,
    VerifyApiKey,
    ReadWrappingKey,
    RotateWrappingKey,
    RequestApproval,
    ApproveRequest,
    ReadApprovals,
}

/// The action of the event a credential's new caller fingerprint raises (not a request:
/// no policy decides it).
pub(crate) const CREDENTIAL_NEW_FINGERPRINT: &str = "credential.new_fingerprint";

/// The action of the event dual control records when an operation spends its approval (in
/// the request of that operation, under the same `request_id`; resource `approval:<id>`).
pub(crate) const APPROVAL_USED: &str = "approval.used";

/// The action of the event an API key's new caller fingerprint raises (likewise no request).
pub(crate) const APIKEY_NEW_FINGERPRINT: &str = "apikey.new_fingerprint";

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CreateKey => "CreateKey",
            Action::ListKeys => "ListKeys",
            Action::GetKey => "GetKey",
            Action::UpdateKey => "UpdateKey",
            Action::ScheduleKeyDeletion => "ScheduleKeyDeletion",
            Action::CancelKeyDeletion => "CancelKeyDeletion",
            Action::RotateKey => "RotateKey",
            Action::ImportKeyPlaintext => "ImportKeyPlaintext",
            Action::ImportKeyWrapped => "ImportKeyWrapped",
            Action::ExportKey => "ExportKey",
            Action::Sign => "Sign",
            Action::Verify => "Verify",
            Action::Encrypt => "Encrypt",
            Action::Decrypt => "Decrypt",
            Action::ReEncrypt => "ReEncrypt",
            Action::GenerateDataKey => "GenerateDataKey",
            Action::WrapKey => "WrapKey",
            Action::UnwrapKey => "UnwrapKey",
            Action::ReadAudit => "ReadAudit",
            Action::VerifyAudit => "VerifyAudit",
            Action::ReadComplianceReport => "ReadComplianceReport",
            Action::CreateToken => "CreateToken",
            Action::ReadToken => "ReadToken",
            Action::RevokeToken => "RevokeToken",
            Action::WhoAmI => "WhoAmI",
            Action::ReloadPolicies => "ReloadPolicies",
            Action::ReadKek => "ReadKek",
            Action::RotateKek => "RotateKek",
            Action::RetireKek => "RetireKek",
            Action::CreateCredential => "CreateCredential",
            Action::ImportCredential => "ImportCredential",
            Action::ListCredentials => "ListCredentials",
            Action::GetCredential => "GetCredential",
            Action::UpdateCredential => "UpdateCredential",
            Action::DeleteCredential => "DeleteCredential",
            Action::ReadCredentialActivity => "ReadCredentialActivity",
            Action::VerifySigV4 => "VerifySigV4",
            Action::DeriveSigningKey => "DeriveSigningKey",
            Action::CreateApiKey => "CreateApiKey",
            Action::GetApiKey => "GetApiKey",
            Action::UpdateApiKey => "UpdateApiKey",
            Action::RevokeApiKey => "RevokeApiKey",
            Action::RerollApiKey => "RerollApiKey",
            Action::ReadApiKeyActivity => "ReadApiKeyActivity",
            Action::VerifyApiKey => "VerifyApiKey",
            Action::ReadWrappingKey => "ReadWrappingKey",
            Action::RotateWrappingKey => "RotateWrappingKey",
            Action::RequestApproval => "RequestApproval",
            Action::ApproveRequest => "ApproveRequest",
            Action::ReadApprovals => "ReadApprovals",
        }
    }
}
