//! Teleport users: finding the one user a chat identity maps to (by a trait
//! holding the chat user id) and reading a user by name.

use std::collections::BTreeMap;

use tonic::{Code, Status};

use super::client::{LIST_PAGE, TeleportClient, unary};
use crate::pb::proto;
use crate::pb::teleport::users::v1 as users;
use crate::pb::{types, wrappers};

/// A Teleport user as review mapping needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub roles: Vec<String>,
    pub traits: BTreeMap<String, Vec<String>>,
}

impl User {
    /// Whether trait `name` lists exactly `value` (no case folding, no prefix).
    pub fn has_trait(&self, name: &str, value: &str) -> bool {
        self.traits.get(name).is_some_and(|values| values.iter().any(|v| v == value))
    }
}

fn user_from_pb(u: types::UserV2) -> User {
    let spec = u.spec.unwrap_or_default();
    User {
        name: u.metadata.map(|m| m.name).unwrap_or_default(),
        roles: spec.roles,
        traits: spec.traits.map(|t| t.values.into_iter().map(|(k, v)| (k, v.values)).collect()).unwrap_or_default(),
    }
}

impl TeleportClient {
    /// Users whose trait `trait_name` holds exactly `value`: pages through
    /// `UsersService/ListUsers` with the trait filter, then re-checks the
    /// trait on every returned user, because servers predating the filter
    /// skip it and return everyone (trusting them would map any clicker to
    /// the only user of a one-user cluster). An empty name or value matches
    /// nobody and makes no call.
    pub async fn users_with_trait(&self, trait_name: &str, value: &str) -> Result<Vec<User>, Status> {
        if trait_name.is_empty() || value.is_empty() {
            return Ok(Vec::new());
        }
        let filter = types::UserFilter {
            search_keywords: Vec::new(),
            traits: Some(wrappers::LabelValues {
                values: [(trait_name.to_string(), wrappers::StringValues { values: vec![value.to_string()] })].into(),
            }),
        };
        let conn = self.connection();
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let req = users::ListUsersRequest {
                page_size: LIST_PAGE,
                page_token: token.clone(),
                with_secrets: false,
                filter: Some(filter.clone()),
            };
            let page = conn.users().list_users(unary(req)).await?.into_inner();
            out.extend(page.users.into_iter().map(user_from_pb).filter(|u| u.has_trait(trait_name, value)));
            // A token that does not move would loop forever.
            if page.next_page_token.is_empty() || page.next_page_token == token {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// One user (`UsersService/GetUser`, falling back to the legacy
    /// `AuthService/GetUser` on UNIMPLEMENTED, as the Go client does for
    /// servers without the users service); `Ok(None)` on NOT_FOUND. Secrets
    /// are never asked for.
    pub async fn get_user(&self, name: &str) -> Result<Option<User>, Status> {
        let conn = self.connection();
        let req = users::GetUserRequest { name: name.into(), current_user: false, with_secrets: false };
        let user = match conn.users().get_user(unary(req)).await {
            Ok(r) => r.into_inner().user,
            Err(s) if s.code() == Code::Unimplemented => {
                let legacy = proto::GetUserRequest { name: name.into(), with_secrets: false };
                match conn.auth().get_user(unary(legacy)).await {
                    Ok(u) => Some(u.into_inner()),
                    Err(s) if s.code() == Code::NotFound => return Ok(None),
                    Err(s) => return Err(s),
                }
            }
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(s),
        };
        Ok(user.map(user_from_pb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trait_match_is_exact() {
        let u = User {
            name: "alice".into(),
            roles: vec![],
            traits: [("slack_user_id".to_string(), vec!["U1".to_string(), "W2".to_string()])].into(),
        };
        assert!(u.has_trait("slack_user_id", "U1"));
        assert!(u.has_trait("slack_user_id", "W2"));
        assert!(!u.has_trait("slack_user_id", "u1"), "case matters");
        assert!(!u.has_trait("slack_user_id", "U"), "no prefix match");
        assert!(!u.has_trait("email", "U1"));
    }

    #[test]
    fn users_convert_with_roles_and_traits() {
        let pb = types::UserV2 {
            metadata: Some(types::Metadata { name: "alice".into(), ..Default::default() }),
            spec: Some(types::UserSpecV2 {
                roles: vec!["access".into()],
                traits: Some(wrappers::LabelValues {
                    values: [("t".to_string(), wrappers::StringValues { values: vec!["v".into()] })].into(),
                }),
            }),
            ..Default::default()
        };
        let u = user_from_pb(pb);
        assert_eq!(u.name, "alice");
        assert_eq!(u.roles, vec!["access"]);
        assert_eq!(u.traits["t"], vec!["v"]);
    }
}
