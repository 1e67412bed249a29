//! What the controller asks of the API server: a client layer that counts
//! every request by verb and resource (`barge_api_requests_total`), so the
//! cost of a Promotion and an idle controller's silence can be measured
//! from the controller's own side.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::metrics::Metrics;

/// The RBAC attributes of one API request, as the API server derives them
/// from its method and path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestAttributes {
    /// `get`, `list`, `watch`, `create`, `patch`, `update`, `delete`,
    /// `deletecollection`.
    pub verb: String,
    /// The API group; empty for the core group.
    pub group: String,
    /// The resource, with its subresource after a slash (`promotions/status`).
    pub resource: String,
    /// Empty for cluster-scoped requests and requests across namespaces.
    pub namespace: String,
}

impl RequestAttributes {
    /// `None` for what is not a resource request (`/version`, discovery).
    pub fn of(method: &http::Method, uri: &http::Uri) -> Option<Self> {
        let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
        let (group, rest) = match segments.as_slice() {
            ["api", _version, rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (*ns, rest),
            _ => ("", rest),
        };
        let (resource, named) = match rest {
            [resource] => (resource.to_string(), false),
            [resource, _name] => (resource.to_string(), true),
            [resource, _name, sub] => (format!("{resource}/{sub}"), true),
            _ => return None,
        };
        let watch = uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let verb = match (method.as_str(), named) {
            ("GET", true) => "get",
            ("GET", false) if watch => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PATCH", _) => "patch",
            ("PUT", _) => "update",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => return None,
        };
        Some(Self {
            verb: verb.into(),
            group: group.into(),
            resource,
            namespace: namespace.into(),
        })
    }
}

/// A `tower` layer for `kube::client::ClientBuilder::with_layer` that
/// counts each request in the metrics as it is sent.
#[derive(Clone)]
pub struct CountRequests {
    metrics: Arc<Metrics>,
}

impl CountRequests {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`CountRequests`] wraps around the client's stack.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match RequestAttributes::of(request.method(), request.uri()) {
            Some(what) => self.metrics.api_request(&what.verb, &what.resource),
            None => self.metrics.api_request("other", ""),
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: &str, uri: &str) -> Option<(String, String, String, String)> {
        let method: http::Method = method.parse().ok()?;
        let uri: http::Uri = uri.parse().ok()?;
        RequestAttributes::of(&method, &uri).map(|a| (a.verb, a.group, a.resource, a.namespace))
    }

    fn attrs(
        verb: &str,
        group: &str,
        resource: &str,
        ns: &str,
    ) -> Option<(String, String, String, String)> {
        Some((verb.into(), group.into(), resource.into(), ns.into()))
    }

    #[test]
    fn a_status_write_is_a_patch_of_the_status_subresource() {
        assert_eq!(
            of(
                "PATCH",
                "/apis/barge.dev/v1alpha1/namespaces/demo/promotions/p1/status?fieldManager=barge&force=true"
            ),
            attrs("patch", "barge.dev", "promotions/status", "demo")
        );
    }

    #[test]
    fn a_watch_is_a_get_of_a_collection_with_watch_set() {
        assert_eq!(
            of(
                "GET",
                "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications?watch=true&resourceVersion=5"
            ),
            attrs("watch", "argoproj.io", "applications", "argocd")
        );
        assert_eq!(
            of("GET", "/apis/barge.dev/v1alpha1/promotions?limit=500"),
            attrs("list", "barge.dev", "promotions", "")
        );
    }

    #[test]
    fn core_objects_and_namespaces_themselves_are_told_apart() {
        assert_eq!(
            of("POST", "/api/v1/namespaces/demo/events"),
            attrs("create", "", "events", "demo")
        );
        assert_eq!(
            of("GET", "/api/v1/namespaces/demo"),
            attrs("get", "", "namespaces", "")
        );
        assert_eq!(
            of("DELETE", "/api/v1/namespaces/demo/configmaps"),
            attrs("deletecollection", "", "configmaps", "demo")
        );
    }

    #[test]
    fn what_is_not_a_resource_request_has_no_attributes() {
        assert_eq!(of("GET", "/version"), None);
        assert_eq!(of("GET", "/apis/barge.dev/v1alpha1"), None);
    }
}
