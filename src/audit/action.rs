//! The actions an audit event (and, later, a policy decision) names: one per operation of
//! API.md. Stable strings: auditors filter on them.

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
    Sign,
    Verify,
    ReadAudit,
    VerifyAudit,
    ReadComplianceReport,
}

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
            Action::Sign => "Sign",
            Action::Verify => "Verify",
            Action::ReadAudit => "ReadAudit",
            Action::VerifyAudit => "VerifyAudit",
            Action::ReadComplianceReport => "ReadComplianceReport",
        }
    }
}
