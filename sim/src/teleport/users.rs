//! Users and roles as Auth keeps them for access reviews, and
//! `teleport.users.v1.UsersService` (`ListUsers` with its trait filter,
//! `GetUser`).
//!
//! A role here holds what the simulator needs of Teleport's role spec: the
//! allowed logins (`GetRole`), `allow.review_requests.roles` (which requested
//! roles a holder may review; `*` globs as in Teleport) and
//! `allow.review_requests.submit_for_users` (whose reviews a holder, the
//! plugin's identity, may submit). A user holds roles and traits.

use std::collections::BTreeMap;

use teleport_plugin_proto::teleport::users::v1 as users;
use teleport_plugin_proto::teleport::users::v1::users_service_server as users_srv;
use teleport_plugin_proto::{types, wrappers};
use tonic::{Request, Response, Status};

use super::{ConnInfo, Service};

/// The parts of a Teleport role the simulator evaluates.
#[derive(Debug, Clone, Default)]
pub(super) struct SimRole {
    pub logins: Vec<String>,
    /// `allow.review_requests.roles`.
    pub review_roles: Vec<String>,
    /// `allow.review_requests.submit_for_users`.
    pub submit_for_users: Vec<String>,
}

/// A Teleport user: its static roles and traits.
#[derive(Debug, Clone, Default)]
pub(super) struct SimUser {
    pub roles: Vec<String>,
    pub traits: BTreeMap<String, Vec<String>>,
}

/// Teleport's role-name match: `*` stands for any run of characters (the
/// glob form of `parse.NewMatcher`; regular expressions are not simulated).
pub(super) fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else { return false };
            (0..=tail.len()).filter(|i| tail.is_char_boundary(*i)).any(|i| glob_match(rest, &tail[i..]))
        }
    }
}

pub(super) fn user_pb(name: &str, u: &SimUser) -> types::UserV2 {
    types::UserV2 {
        kind: "user".into(),
        version: "v2".into(),
        metadata: Some(types::Metadata { name: name.into(), namespace: "default".into(), ..Default::default() }),
        spec: Some(types::UserSpecV2 {
            roles: u.roles.clone(),
            traits: Some(wrappers::LabelValues {
                values: u
                    .traits
                    .iter()
                    .map(|(k, v)| (k.clone(), wrappers::StringValues { values: v.clone() }))
                    .collect(),
            }),
        }),
        ..Default::default()
    }
}

/// Whether `u` passes a `types.UserFilter`: every filter trait lists values
/// the user holds exactly (upstream's server-side trait filter), and every
/// search keyword occurs, case-insensitively, in the name, a role or a trait
/// key or value (upstream's `MatchSearch`).
fn filter_matches(name: &str, u: &SimUser, f: &types::UserFilter, use_traits: bool) -> bool {
    let traits_ok = !use_traits
        || f.traits.as_ref().is_none_or(|t| {
            t.values.iter().all(|(k, want)| {
                let have = u.traits.get(k);
                want.values.iter().all(|v| have.is_some_and(|h| h.contains(v)))
            })
        });
    let fields: Vec<String> = std::iter::once(name.to_string())
        .chain(u.roles.iter().cloned())
        .chain(u.traits.iter().flat_map(|(k, v)| std::iter::once(k.clone()).chain(v.iter().cloned())))
        .map(|s| s.to_lowercase())
        .collect();
    let keywords_ok =
        f.search_keywords.iter().all(|kw| fields.iter().any(|field| field.contains(&kw.to_lowercase())));
    traits_ok && keywords_ok
}

/// Largest page Auth serves (its default chunk size).
const MAX_PAGE: usize = 1000;

const SERVICE: &str = "teleport.users.v1.UsersService";

#[tonic::async_trait]
impl users_srv::UsersService for Service {
    async fn get_user(&self, req: Request<users::GetUserRequest>) -> Result<Response<users::GetUserResponse>, Status> {
        self.0.enter_service(SERVICE, "UsersService/GetUser").await?;
        self.0.check_user_reads()?;
        let caller = req.extensions().get::<ConnInfo>().map(|c| c.user.clone()).unwrap_or_default();
        let r = req.into_inner();
        if r.with_secrets {
            return Err(Status::permission_denied("reading user secrets is not allowed to plugins"));
        }
        let name = if r.name.is_empty() && r.current_user { caller } else { r.name };
        let s = self.0.store.lock().expect("poisoned");
        let u = s.users.get(&name).ok_or_else(|| Status::not_found(format!("user {name:?} is not found")))?;
        Ok(Response::new(users::GetUserResponse { user: Some(user_pb(&name, u)) }))
    }

    async fn list_users(
        &self,
        req: Request<users::ListUsersRequest>,
    ) -> Result<Response<users::ListUsersResponse>, Status> {
        self.0.enter_service(SERVICE, "UsersService/ListUsers").await?;
        self.0.check_user_reads()?;
        let r = req.into_inner();
        if r.with_secrets {
            return Err(Status::permission_denied("reading user secrets is not allowed to plugins"));
        }
        // A server that predates the trait filter skips the unknown field.
        let use_traits = !self.0.faults.lock().expect("poisoned").ignore_user_trait_filter;
        let filter = r.filter.unwrap_or_default();
        let size = if r.page_size <= 0 { MAX_PAGE } else { (r.page_size as usize).min(MAX_PAGE) };
        let s = self.0.store.lock().expect("poisoned");
        // The token is the name of the first user of the next page.
        let mut it = s
            .users
            .range(r.page_token.clone()..)
            .filter(|(name, u)| filter_matches(name, u, &filter, use_traits));
        let users: Vec<types::UserV2> = it.by_ref().take(size).map(|(n, u)| user_pb(n, u)).collect();
        let next_page_token = it.next().map(|(n, _)| n.clone()).unwrap_or_default();
        Ok(Response::new(users::ListUsersResponse { users, next_page_token }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_teleport_role_matchers() {
        assert!(glob_match("editor", "editor"));
        assert!(!glob_match("editor", "editors"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("dev-*", "dev-backend"));
        assert!(!glob_match("dev-*", "prod-backend"));
        assert!(glob_match("*-admin", "db-admin"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXbY"));
    }

    #[test]
    fn trait_filter_is_an_exact_value_match() {
        let u = SimUser { roles: vec!["access".into()], traits: [("slack".to_string(), vec!["U1".to_string()])].into() };
        let want = |v: &str| types::UserFilter {
            traits: Some(wrappers::LabelValues {
                values: [("slack".to_string(), wrappers::StringValues { values: vec![v.into()] })].into(),
            }),
            ..Default::default()
        };
        assert!(filter_matches("alice", &u, &want("U1"), true));
        assert!(!filter_matches("alice", &u, &want("U"), true), "no prefix match");
        assert!(filter_matches("alice", &u, &want("U2"), false), "filter ignored by an old server");
        let kw = types::UserFilter { search_keywords: vec!["ALI".into()], ..Default::default() };
        assert!(filter_matches("alice", &u, &kw, true));
    }
}
