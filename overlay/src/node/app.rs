//! The embedder's requests: Store, Fetch, Find and Ping, each named by a
//! [`RequestHandle`] that comes back in its completion event.

use super::transaction::Purpose;
use super::{Error, Event, Failure, Node, RequestHandle, State};
use crate::id;
use crate::wire::{
    Destination, FetchReq, FindAns, FindReq, GenericCertificate, MessageCode, MessageContents,
    NodeId, PingReq, ResourceId, StoreReq,
};
use std::time::Instant;

/// The destination of a request about `resource`, which must be a place on our ring.
fn resource_destination(resource: &ResourceId) -> Result<Destination, Error> {
    id::resource_position(resource).ok_or(Error::BadResource)?;
    Ok(Destination::Resource(resource.clone()))
}

impl Node {
    pub(super) fn next_handle(&mut self) -> RequestHandle {
        self.next_handle += 1;
        RequestHandle(self.next_handle)
    }

    /// Sends one of the embedder's requests; a Fetch is noted, to check its answer against.
    fn app_request(
        &mut self,
        now: Instant,
        dest: Destination,
        code: MessageCode,
        body: Vec<u8>,
        fetch: Option<&FetchReq>,
        certs: Vec<GenericCertificate>,
    ) -> Result<RequestHandle, Error> {
        let handle = self.next_handle();
        self.app_request_as(handle, now, dest, code, body, fetch, certs)?;
        Ok(handle)
    }

    /// [`app_request`](Self::app_request) under a handle the caller made (a lookup books
    /// its step under it before the answer can come, which for a key we own is at once).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn app_request_as(
        &mut self,
        handle: RequestHandle,
        now: Instant,
        dest: Destination,
        code: MessageCode,
        body: Vec<u8>,
        fetch: Option<&FetchReq>,
        certs: Vec<GenericCertificate>,
    ) -> Result<(), Error> {
        if self.state != State::Joined {
            return Err(Error::NotJoined);
        }
        if let Some(req) = fetch {
            // Noted first: a Fetch for a key we own is answered at once.
            self.note_fetch(handle, req);
        }
        if let Err(e) = self.request(now, dest, code, body, Purpose::App(handle), certs) {
            self.data.forget_fetch(handle);
            return Err(e);
        }
        Ok(())
    }

    /// Stores `req` (values already signed, e.g. with `storage::sign_value`) at the peer
    /// responsible for `req.resource`. Completes with [`Event::StoreDone`] or `Failed`.
    pub fn store(&mut self, now: Instant, req: &StoreReq) -> Result<RequestHandle, Error> {
        self.store_with_certificates(now, req, Vec::new())
    }

    /// [`store`](Self::store) with values that other keys signed, their certificates in
    /// the message: what a peer that passes records on sends. The storing peer takes such
    /// values only as copies from the peers it expects them from (docs/OVERLAY.md), so an
    /// original store of another's value is refused; this is how tests play that member.
    pub fn store_with_certificates(
        &mut self,
        now: Instant,
        req: &StoreReq,
        certs: Vec<GenericCertificate>,
    ) -> Result<RequestHandle, Error> {
        let dest = resource_destination(&req.resource)?;
        self.app_request(
            now,
            dest,
            MessageCode::StoreReq,
            req.to_bytes(),
            None,
            certs,
        )
    }

    /// Fetches from the peer responsible for `req.resource`; the answer's value
    /// signatures and access rights are checked before [`Event::FetchDone`].
    pub fn fetch(&mut self, now: Instant, req: &FetchReq) -> Result<RequestHandle, Error> {
        let dest = resource_destination(&req.resource)?;
        self.app_request(
            now,
            dest,
            MessageCode::FetchReq,
            req.to_bytes(),
            Some(req),
            Vec::new(),
        )
    }

    /// Find (§7.4.4) at the peer responsible for `req.resource`.
    pub fn find(&mut self, now: Instant, req: &FindReq) -> Result<RequestHandle, Error> {
        let dest = resource_destination(&req.resource)?;
        self.app_request(
            now,
            dest,
            MessageCode::FindReq,
            req.to_bytes(),
            None,
            Vec::new(),
        )
    }

    /// Pings a Node-ID or the owner of a Resource-ID; [`Event::PingDone`] names who
    /// answered and after how many hops.
    pub fn ping(&mut self, now: Instant, dest: Destination) -> Result<RequestHandle, Error> {
        self.app_request(
            now,
            dest,
            MessageCode::PingReq,
            PingReq::default().to_bytes(),
            None,
            Vec::new(),
        )
    }

    /// The answer to the embedder's request `handle`: its completion event, or why the
    /// answer is refused.
    pub(super) fn app_done(
        &mut self,
        handle: RequestHandle,
        responder: NodeId,
        hops: u32,
        contents: &MessageContents,
        certs: &[GenericCertificate],
    ) -> Result<Event, Failure> {
        match contents.code {
            MessageCode::PingAns => Ok(Event::PingDone {
                handle,
                responder,
                hops,
            }),
            MessageCode::StoreAns => {
                self.data
                    .store_answer(&contents.body)
                    .map(|answer| Event::StoreDone {
                        handle,
                        answer,
                        hops,
                    })
            }
            MessageCode::FetchAns => {
                self.data
                    .fetch_answer(handle, &contents.body, certs)
                    .map(|answer| Event::FetchDone {
                        handle,
                        answer,
                        responder,
                        hops,
                    })
            }
            MessageCode::FindAns => FindAns::parse(&contents.body)
                .map_err(|_| Failure::BadAnswer("FindAns"))
                .map(|answer| Event::FindDone {
                    handle,
                    answer,
                    hops,
                }),
            _ => Err(Failure::BadAnswer("unexpected answer")),
        }
    }
}
