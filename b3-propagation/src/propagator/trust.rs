//! [`TrustPolicy`]: how much of the inbound headers an edge trusts.

/// What to do with the caller's context. See [`TrustPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InboundContext {
    /// Use it as sent.
    Trust,
    /// Keep the ids, drop the sampling decision and debug flag (they become deferred).
    IgnoreSampling,
    /// Ignore it: no request continues the caller's trace. A hop that reports a span starts
    /// a new trace with it; one that reports nothing sends no ids on (forward mode has
    /// nothing received to re-send), so the next hop that reports a span starts it, unless
    /// a sampler here dropped the new trace: then its decision goes on alone (see
    /// [`RequestContext::decide_sampling`](crate::RequestContext::decide_sampling)).
    Ignore,
}

/// What to do with the caller's `x-request-id`. See [`TrustPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InboundRequestId {
    /// Keep a valid one.
    Keep,
    /// Drop it, so a new one is generated (Envoy's edge behaviour).
    Regenerate,
}

/// What to do with the [propagated fields](crate::field) a caller sent. See [`TrustPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InboundFields {
    /// Keep every configured field.
    Keep,
    /// Keep only the fields declared
    /// [`kept_at_edge`](crate::PropagatedField::kept_at_edge); drop the others.
    OnlyKeptAtEdge,
}

/// What to do with the baggage a caller sent (W3C `baggage` and the prefixed headers). See
/// [`TrustPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InboundBaggage {
    /// Keep it, and carry it into every call.
    Keep,
    /// Drop it: a client outside the mesh does not choose the baggage its services see (nor
    /// `baggage-user-agent` and the like, which the mesh may route on). Baggage the
    /// application sets is carried as always.
    Drop,
}

/// How much of the inbound headers to trust: the mesh-internal default trusts everything; an
/// edge facing the internet should not let clients force sampling, choose request ids or set
/// the fields the mesh routes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrustPolicy {
    pub(crate) context: InboundContext,
    pub(crate) request_id: InboundRequestId,
    pub(crate) fields: InboundFields,
    pub(crate) baggage: InboundBaggage,
}

impl Default for TrustPolicy {
    fn default() -> Self {
        Self::trusted()
    }
}

impl TrustPolicy {
    /// Trust the inbound context and request id (a hop inside the mesh).
    #[must_use]
    pub const fn trusted() -> Self {
        TrustPolicy {
            context: InboundContext::Trust,
            request_id: InboundRequestId::Keep,
            fields: InboundFields::Keep,
            baggage: InboundBaggage::Keep,
        }
    }

    /// An untrusted edge, as Envoy's edge listener: keep the inbound ids (so a client's trace
    /// can continue), but ignore its sampling and debug flags and regenerate the request id.
    /// The opaque headers (`x-ot-span-context`, `grpc-trace-bin` when not a context format, the
    /// opt-in vendor headers) are not forwarded either: they carry a client's decision this hop
    /// cannot re-decide. Propagated fields are dropped unless declared
    /// [`kept_at_edge`](crate::PropagatedField::kept_at_edge), and so is the client's baggage
    /// (W3C Baggage: drop incoming baggage at a trust boundary; [`baggage`](Self::baggage)
    /// keeps it).
    #[must_use]
    pub const fn untrusted() -> Self {
        TrustPolicy {
            context: InboundContext::IgnoreSampling,
            request_id: InboundRequestId::Regenerate,
            fields: InboundFields::OnlyKeptAtEdge,
            baggage: InboundBaggage::Drop,
        }
    }

    /// Ignore the inbound trace context entirely but keep the request id (Envoy's
    /// `preserve_external_request_id`). Propagated fields are dropped unless declared
    /// [`kept_at_edge`](crate::PropagatedField::kept_at_edge), and so is inbound baggage.
    #[must_use]
    pub const fn keep_request_id_only() -> Self {
        TrustPolicy {
            context: InboundContext::Ignore,
            request_id: InboundRequestId::Keep,
            fields: InboundFields::OnlyKeptAtEdge,
            baggage: InboundBaggage::Drop,
        }
    }

    /// This policy with the given handling of the inbound context.
    #[must_use]
    pub const fn context(mut self, context: InboundContext) -> Self {
        self.context = context;
        self
    }

    /// This policy with the given handling of the inbound request id.
    #[must_use]
    pub const fn request_id(mut self, request_id: InboundRequestId) -> Self {
        self.request_id = request_id;
        self
    }

    /// This policy with the given handling of the inbound propagated fields.
    #[must_use]
    pub const fn fields(mut self, fields: InboundFields) -> Self {
        self.fields = fields;
        self
    }

    /// This policy with the given handling of the inbound baggage.
    #[must_use]
    pub const fn baggage(mut self, baggage: InboundBaggage) -> Self {
        self.baggage = baggage;
        self
    }

    /// The handling of the inbound propagated fields.
    #[must_use]
    pub const fn inbound_fields(&self) -> InboundFields {
        self.fields
    }

    /// The handling of the inbound baggage.
    #[must_use]
    pub const fn inbound_baggage(&self) -> InboundBaggage {
        self.baggage
    }

    /// The handling of the inbound context.
    #[must_use]
    pub const fn inbound_context(&self) -> InboundContext {
        self.context
    }

    /// The handling of the inbound request id.
    #[must_use]
    pub const fn inbound_request_id(&self) -> InboundRequestId {
        self.request_id
    }
}
