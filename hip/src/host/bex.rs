//! The base exchange (RFC 7401 §4.1, §6.6–6.10): the stateless responder's I1 and I2
//! handling, the initiator's R1 and R2 handling, and the keys an exchange produces.

use super::*;

/// Addresses an I1 goes to at most: the locators given, and where crossing I1s came from.
const MAX_I1_CANDIDATES: usize = 6;

impl Host {
    pub(super) fn on_i1(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        i1: &HipRepr,
    ) -> Result<(), Error> {
        let routed = self.routed_in.clone();
        // Relayed by our rendezvous server: answer the initiator, not the server.
        let relayed = match routed {
            Some(_) => None,
            None => self.relayed_from(local, remote, bytes, i1)?,
        };
        let (remote, via) = match relayed {
            Some((initiator, server)) => (initiator, Some(server)),
            None => (remote, None),
        };
        let peer = i1.sender_hit;
        if !peer.is_orchid() || peer == self.hit() {
            return Err(Error::InvalidHit);
        }
        // Simultaneous initiation: the exchange started by the smaller HIT survives
        // (RFC 7401 §4.4.4). The peer's I1 shows where it is reachable now, perhaps
        // through a NAT that would drop anything we send it unasked and where our I1 has
        // not gone: ours goes there too (and so do its retransmissions), or both sides
        // would wait for an answer that cannot come.
        let smaller = self.hit() < peer;
        if let Some(a) = self.assocs.get_mut(&peer) {
            if a.state == AssocState::I1Sent && smaller {
                // (A routed I1 came from a hop, not from where the peer is.)
                let resend = (routed.is_none()
                    && !a.candidates.contains(&remote)
                    && a.candidates.len() < MAX_I1_CANDIDATES)
                    .then(|| {
                        a.candidates.push(remote);
                        a.last_sent.clone().map(|i1| (a.local, i1))
                    })
                    .flatten();
                if let Some((ours, i1)) = resend {
                    let local = self.local_towards(ours, remote);
                    self.transmit(local, remote, &i1);
                }
                return Ok(());
            }
        }
        // Through our relay every I1 comes from the relay's address: count by the sender's.
        let source = self
            .answering_via
            .filter(|(server, _)| *server == remote)
            .map_or(remote.ip(), |(_, origin)| origin.ip());
        if !self.r1_limiter.allow(now, source) {
            return Err(Error::RateLimited);
        }
        let k = self.difficulty.on_i1(now);
        let generation = self.generations.back().map_or(0, |g| g.number);
        let template = self.r1_template(generation, k)?;
        let mut r1 = match &routed {
            Some(r) => self.routed_r1(template, r)?,
            None => template,
        };
        r1.receiver_hit = peer;
        // The I2 of a routed exchange comes by another path: its puzzle is bound to no
        // address (see `bone`).
        let (initiator, ours) = match routed {
            Some(_) => (UNBOUND, UNBOUND),
            None => (remote.ip(), local.ip()),
        };
        let i = self
            .secrets
            .opaque_i(
                self.profile,
                generation,
                &peer,
                &self.hit(),
                &ip_bytes(initiator),
                &puzzle_context(ours, k),
            )
            .ok_or(Error::BadPuzzle)?;
        for p in &mut r1.params {
            if let Param::Puzzle(puzzle) = p {
                puzzle.i = i.clone();
                puzzle.opaque = opaque_of(generation);
            }
        }
        if let Some(server) = via {
            // Unsigned, after the signature (RFC 8004 §4.2.3).
            r1.params
                .push(Param::ViaRvs(vec![crate::wire::mapped(server.ip())]));
        }
        self.stats.r1_sent += 1;
        if let Some(r) = &routed {
            return self.send_routed_r1(r, r1);
        }
        self.transmit(local, remote, &r1.to_bytes());
        Ok(())
    }

    pub(super) fn on_r1(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        r1: &HipRepr,
    ) -> Result<(), Error> {
        let peer_hit = r1.sender_hit;
        let a = self.assocs.get(&peer_hit).ok_or(Error::Unexpected)?;
        let counter = r1.params.iter().find_map(|p| match p {
            Param::R1Counter { reserved, counter } => Some((*reserved, *counter)),
            _ => None,
        });
        match a.state {
            // Not in CLOSING or CLOSED (RFC 7401 §6.8 drops it there): HIP_SIGNATURE_2 does
            // not cover the receiver HIT, so an old R1 of the peer could be replayed at us.
            AssocState::I1Sent => {}
            // A newer R1 (larger counter) restarts the I2 (RFC 7401 §4.4.2).
            AssocState::I2Sent
                if counter.is_some_and(|(_, c)| a.r1_counter.is_some_and(|old| c > old)) => {}
            _ => return Err(Error::Unexpected),
        }
        let host_id = match r1.param(param_type::HOST_ID) {
            Some(Param::HostId(h)) => h,
            _ => return Err(Error::MissingParam(param_type::HOST_ID)),
        };
        let peer = PublicIdentity::from_host_id(host_id)?;
        if peer.hit() != peer_hit {
            return Err(Error::InvalidHit);
        }
        check_signature(bytes, &peer, param_type::HIP_SIGNATURE_2)?;
        let suite_byte = self.profile.hit_suite() << 4;
        match r1.param(param_type::HIT_SUITE_LIST) {
            Some(Param::HitSuiteList(l)) if l.contains(&suite_byte) => {}
            _ => return Err(Error::UnsupportedHitSuite),
        }
        // Downgrade check (RFC 7401 §6.8 step 7): the group used must be the first of the
        // responder's list that we offered.
        let ours = [self.profile.dh_group()];
        let chosen = match r1.param(param_type::DH_GROUP_LIST) {
            Some(Param::DhGroupList(l)) => l.iter().copied().find(|g| ours.contains(g)),
            _ => return Err(Error::MissingParam(param_type::DH_GROUP_LIST)),
        }
        .ok_or(Error::NoDhProposal)?;
        let (group, their_public) = match r1.param(param_type::DIFFIE_HELLMAN) {
            Some(Param::DiffieHellman { group, public }) => (*group, public),
            _ => return Err(Error::MissingParam(param_type::DIFFIE_HELLMAN)),
        };
        if group != chosen {
            return Err(Error::DhDowngrade);
        }
        let puzzle = match r1.param(param_type::PUZZLE) {
            Some(Param::Puzzle(p)) if p.i.len() == self.profile.rhash_len() => p,
            _ => return Err(Error::MissingParam(param_type::PUZZLE)),
        };
        // A responder (or a replay of its R1) must not make us hash for seconds.
        if puzzle.k > self.config.max_puzzle_k {
            return Err(Error::PuzzleTooHard);
        }
        let cipher = match r1.param(param_type::HIP_CIPHER) {
            Some(Param::HipCipher(ids)) => first_common(ids, &self.config.hip_ciphers),
            _ => None,
        }
        .and_then(HipCipher::from_id)
        .ok_or(Error::NoHipCipher)?;
        let esp_listed = matches!(r1.param(param_type::TRANSPORT_FORMAT_LIST),
            Some(Param::TransportFormatList(l)) if l.contains(&TRANSPORT_FORMAT_ESP));
        let suite = match r1.param(param_type::ESP_TRANSFORM) {
            Some(Param::EspTransform { suites, .. }) if esp_listed => {
                first_common(suites, &self.config.esp_suites)
            }
            _ => None,
        }
        .ok_or(Error::NoEspTransform)?;

        let mut start = vec![0u8; self.profile.rhash_len()];
        self.rng.fill_bytes(&mut start);
        let our_hit = self.hit();
        let (j, _) = puzzle::solve(
            self.profile,
            puzzle.k,
            &puzzle.i,
            &our_hit,
            &peer_hit,
            &start,
            self.config.max_puzzle_tries,
        )
        .ok_or(Error::PuzzleTooHard)?;
        let dh = self.profile.dh_keypair(random32(&mut self.rng));
        let kij = self.profile.dh_agree(&dh, their_public)?;
        let spi_in = self.new_spi();
        let keys = derive(
            self.profile,
            &kij,
            &puzzle.i,
            &j,
            our_hit,
            peer_hit,
            cipher,
            suite,
            spi_in,
            true,
        )?;

        let mut params = vec![Param::EspInfo(EspInfo {
            reserved: 0,
            keymat_index: hip_keys_len(self.profile, cipher) as u16,
            old_spi: 0,
            new_spi: spi_in,
        })];
        if let Some((reserved, counter)) = counter {
            params.push(Param::R1Counter { reserved, counter });
        }
        params.push(Param::Solution(Solution {
            k: puzzle.k,
            reserved: 0,
            opaque: puzzle.opaque,
            i: puzzle.i.clone(),
            j,
        }));
        params.push(Param::DiffieHellman {
            group,
            public: dh.public.clone(),
        });
        params.push(Param::HipCipher(vec![cipher.id()]));
        let (nat_mode, pacing) = self.nat_select(r1);
        if let Some(mode) = nat_mode {
            params.push(Param::NatTraversalMode {
                reserved: 0,
                modes: vec![mode],
            });
            params.push(Param::TransactionPacing(ice::millis(pacing)));
        }
        let mut iv = vec![0u8; cipher.iv_len()];
        self.rng.fill_bytes(&mut iv);
        params.push(Param::Encrypted {
            reserved: 0,
            data: cipher.encrypt(&keys.enc_out, &iv, &self.host_id_tlv),
        });
        params.extend(self.reg_request(&peer_hit, r1));
        params.push(Param::TransportFormatList(vec![TRANSPORT_FORMAT_ESP]));
        params.push(Param::EspTransform {
            reserved: 0,
            suites: vec![suite],
        });
        let mut i2 = HipRepr {
            next_header: 59,
            packet_type: PacketType::I2,
            version: 2,
            controls: 0,
            sender_hit: our_hit,
            receiver_hit: peer_hit,
            params,
        };
        add_mac(
            &mut i2,
            self.profile,
            &keys.session.mac_out,
            param_type::HIP_MAC,
            &[],
        );
        add_signature(&mut i2, &self.identity, param_type::HIP_SIGNATURE);
        let i2 = i2.to_bytes();

        // An R1 that came back through the overlay names where the responder is: the I2
        // goes there, and the rest of the exchange with it.
        let (local, remote) = match self.routed_in {
            Some(_) => {
                let to = *bone::i2_destinations(r1)
                    .first()
                    .ok_or(Error::MissingParam(param_type::LOCATOR_SET))?;
                (self.local_towards(local, to), to)
            }
            None => (local, remote),
        };
        let host_id_tlv = find_raw(bytes, param_type::HOST_ID)
            .map(|(offset, c)| bytes[offset..offset + padded(c.len())].to_vec())
            .ok_or(Error::MissingParam(param_type::HOST_ID))?;
        let a = self.assocs.get_mut(&peer_hit).ok_or(Error::Unexpected)?;
        a.peer = Some(peer);
        a.peer_host_id_tlv = host_id_tlv;
        a.r1_counter = counter.map(|(_, c)| c);
        a.local = local;
        a.remote = remote;
        a.routed_i1 = None;
        a.keys = Some(keys.session);
        a.nat_mode = nat_mode;
        a.pacing = pacing;
        let rto = a.rtt_sample(now).map_or(self.config.i2_timeout, |rtt| {
            (rtt * 4).clamp(self.config.min_timeout, self.config.i2_timeout)
        });
        a.state = AssocState::I2Sent;
        a.last_sent = Some(i2.clone());
        a.arm(&mut self.timers, now, rto);
        tracing::debug!(peer = %peer_hit, k = puzzle.k, "R1 accepted, sending I2");
        self.transmit(local, remote, &i2);
        Ok(())
    }

    pub(super) fn on_i2(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        i2: &HipRepr,
    ) -> Result<(), Error> {
        let peer_hit = i2.sender_hit;
        let solution = match i2.param(param_type::SOLUTION) {
            Some(Param::Solution(s)) => s,
            _ => return Err(Error::MissingParam(param_type::SOLUTION)),
        };
        if let Some(a) = self.assocs.get(&peer_hit) {
            match a.state {
                // Simultaneous initiation: the smaller HIT keeps its own exchange.
                AssocState::I2Sent if self.hit() < peer_hit => return Err(Error::Unexpected),
                // The same I2 again (lost R2, or a replay): repeat the R2, change nothing.
                // Our J for it is KEYMAT's: the seed of the exchange we answered.
                AssocState::R2Sent | AssocState::Established
                    if !a.initiator && a.keys.as_ref().is_some_and(|k| k.seed.j == solution.j) =>
                {
                    if let Some(r2) = a.last_sent.clone() {
                        let (local, remote) = (a.local, a.remote);
                        self.transmit(local, remote, &r2);
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        // Every I2 counts as load, like an I1: a flood of I2s raises the difficulty too.
        self.difficulty.on_i1(now);
        let generation = self.check_solution(local, remote, peer_hit, i2, solution)?;
        self.admit_solution(generation, solution)?;
        // The puzzle is solved: from here on the initiator is worth a NOTIFY.
        match self.accept_i2(now, local, remote, bytes, i2, solution) {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(kind) = e.notify_type() {
                    self.notify(now, local, remote, peer_hit, kind, Vec::new());
                }
                Err(e)
            }
        }
    }

    /// Stateless check that `solution` answers a puzzle we issued to this initiator.
    pub(super) fn check_solution(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        peer_hit: Hit,
        i2: &HipRepr,
        solution: &Solution,
    ) -> Result<u64, Error> {
        let generation = match i2.param(param_type::R1_COUNTER) {
            Some(Param::R1Counter { counter, .. }) => Some(*counter),
            _ => self
                .generations
                .iter()
                .map(|g| g.number)
                .find(|n| opaque_of(*n) == solution.opaque),
        }
        .ok_or(Error::BadPuzzle)?;
        if opaque_of(generation) != solution.opaque {
            return Err(Error::BadPuzzle);
        }
        let issued = |initiator: IpAddr, ours: IpAddr| {
            self.secrets.opaque_i(
                self.profile,
                generation,
                &peer_hit,
                &self.hit(),
                &ip_bytes(initiator),
                &puzzle_context(ours, solution.k),
            )
        };
        let bound = issued(remote.ip(), local.ip()).ok_or(Error::BadPuzzle)?;
        // Or the puzzle of an R1 that answered a routed I1 (see `bone`).
        let unbound = || issued(UNBOUND, UNBOUND);
        if (bound != solution.i && unbound().as_ref() != Some(&solution.i))
            || !puzzle::verify(
                self.profile,
                solution.k,
                &solution.i,
                &peer_hit,
                &self.hit(),
                &solution.j,
            )
        {
            return Err(Error::BadPuzzle);
        }
        Ok(generation)
    }

    /// Admits a solved puzzle to the expensive part of I2 processing. The same (#I, #J)
    /// as an I2 already accepted is a replay (the duplicate of a live association was
    /// answered before this): with the generation's Diffie-Hellman key it would rebuild the
    /// same keys, and ESP would reuse its nonces. More than a few attempts for one #I is a
    /// flood of cheap solutions to one puzzle; an honest initiator needs one per exchange,
    /// or a few when copies are corrupted on the way.
    fn admit_solution(&mut self, generation: u64, solution: &Solution) -> Result<(), Error> {
        let limit = self.config.max_solutions;
        let g = self
            .generations
            .iter_mut()
            .find(|g| g.number == generation)
            .ok_or(Error::BadPuzzle)?;
        if !g.solutions.contains_key(&solution.i) && g.solutions.len() >= limit {
            return Err(Error::TooManyAssociations);
        }
        let entry = g.solutions.entry(solution.i.clone()).or_default();
        if entry.accepted.contains(&solution.j) {
            return Err(Error::Replayed);
        }
        if entry.attempts >= ATTEMPTS_PER_PUZZLE {
            return Err(Error::BadPuzzle);
        }
        entry.attempts += 1;
        Ok(())
    }

    /// Remembers the solution of an I2 that was accepted, so that a copy is a replay.
    fn accepted_solution(&mut self, generation: u64, solution: &Solution) {
        if let Some(g) = self.generations.iter_mut().find(|g| g.number == generation) {
            let entry = g.solutions.entry(solution.i.clone()).or_default();
            if entry.accepted.len() < ATTEMPTS_PER_PUZZLE as usize {
                entry.accepted.push(solution.j.clone());
            }
        }
    }

    pub(super) fn accept_i2(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        i2: &HipRepr,
        solution: &Solution,
    ) -> Result<(), Error> {
        let peer_hit = i2.sender_hit;
        let generation = match i2.param(param_type::R1_COUNTER) {
            Some(Param::R1Counter { counter, .. }) => *counter,
            _ => self
                .generations
                .iter()
                .map(|g| g.number)
                .find(|n| opaque_of(*n) == solution.opaque)
                .ok_or(Error::BadPuzzle)?,
        };
        let (group, their_public) = match i2.param(param_type::DIFFIE_HELLMAN) {
            Some(Param::DiffieHellman { group, public }) => (*group, public),
            _ => return Err(Error::MissingParam(param_type::DIFFIE_HELLMAN)),
        };
        if group != self.profile.dh_group() {
            return Err(Error::NoDhProposal);
        }
        let cipher = match i2.param(param_type::HIP_CIPHER) {
            Some(Param::HipCipher(ids))
                if ids.len() == 1 && self.config.hip_ciphers.contains(&ids[0]) =>
            {
                HipCipher::from_id(ids[0])
            }
            _ => None,
        }
        .ok_or(Error::NoHipCipher)?;
        let esp_listed = matches!(i2.param(param_type::TRANSPORT_FORMAT_LIST),
            Some(Param::TransportFormatList(l)) if l.as_slice() == [TRANSPORT_FORMAT_ESP]);
        let suite = match i2.param(param_type::ESP_TRANSFORM) {
            Some(Param::EspTransform { suites, .. })
                if esp_listed
                    && suites.len() == 1
                    && self.config.esp_suites.contains(&suites[0]) =>
            {
                Some(suites[0])
            }
            _ => None,
        }
        .ok_or(Error::NoEspTransform)?;
        let spi_out = match i2.param(param_type::ESP_INFO) {
            Some(Param::EspInfo(info)) if info.new_spi > 255 => info.new_spi,
            _ => return Err(Error::MissingParam(param_type::ESP_INFO)),
        };
        let dh = &self
            .generations
            .iter()
            .find(|g| g.number == generation)
            .ok_or(Error::BadPuzzle)?
            .dh;
        let kij = self.profile.dh_agree(dh, their_public)?;
        let spi_in = self.new_spi();
        let mut keys = derive(
            self.profile,
            &kij,
            &solution.i,
            &solution.j,
            peer_hit,
            self.hit(),
            cipher,
            suite,
            spi_in,
            false,
        )?;
        keys.session.esp.spi_out = spi_out;
        let host_id = match i2.param(param_type::ENCRYPTED) {
            Some(Param::Encrypted { data, .. }) => {
                let plain = cipher
                    .decrypt(&keys.enc_in, data)
                    .map_err(|_| Error::BadEncryption)?;
                match parse_tlv(&plain) {
                    Some(Param::HostId(h)) => h,
                    _ => return Err(Error::BadEncryption),
                }
            }
            _ => match i2.param(param_type::HOST_ID) {
                Some(Param::HostId(h)) => h.clone(),
                _ => return Err(Error::MissingParam(param_type::HOST_ID)),
            },
        };
        let peer = PublicIdentity::from_host_id(&host_id)?;
        if peer.hit() != peer_hit {
            return Err(Error::InvalidHit);
        }
        check_mac(
            bytes,
            self.profile,
            &keys.session.mac_in,
            param_type::HIP_MAC,
            &[],
        )?;
        check_signature(bytes, &peer, param_type::HIP_SIGNATURE)?;
        // RFC 9028 §4.3 step 4, §4.7.2: a mode we did not offer, or plain UDP
        // encapsulation through our relay, which cannot carry the exchange on, is refused
        // with NOTIFY 60 (by `on_i2`, as every refusal after the puzzle).
        let (nat_mode, pacing) = self.nat_accept(remote, i2)?;
        if !self.assocs.contains_key(&peer_hit) && self.assocs.len() >= self.config.max_associations
        {
            return Err(Error::TooManyAssociations);
        }

        let mut r2 = HipRepr {
            next_header: 59,
            packet_type: PacketType::R2,
            version: 2,
            controls: 0,
            sender_hit: self.hit(),
            receiver_hit: peer_hit,
            params: vec![Param::EspInfo(EspInfo {
                reserved: 0,
                keymat_index: hip_keys_len(self.profile, cipher) as u16,
                old_spi: 0,
                new_spi: spi_in,
            })],
        };
        r2.params.extend(self.reg_answer(now, peer_hit, remote, i2));
        add_mac(
            &mut r2,
            self.profile,
            &keys.session.mac_out,
            param_type::HIP_MAC_2,
            &self.host_id_tlv,
        );
        add_signature(&mut r2, &self.identity, param_type::HIP_SIGNATURE);
        let r2 = r2.to_bytes();

        // A valid I2 replaces whatever we had with this peer (RFC 7401 §4.4.2): a
        // simultaneous exchange we lost, or an association the peer has forgotten.
        let (handle, queue) = match self.assocs.remove(&peer_hit) {
            Some(old) => {
                self.timers.forget(&old);
                (old.handle, old.queue)
            }
            None => (self.new_handle(), Default::default()),
        };
        let mut a = Assoc::new(handle, peer_hit, AssocState::R2Sent);
        // Packets queued for an exchange we started and lost (simultaneous initiation)
        // go out on this one.
        a.queue = queue;
        a.local = local;
        a.remote = remote;
        a.peer = Some(peer);
        a.nat_mode = nat_mode;
        a.pacing = pacing;
        a.registration =
            self.rvs_clients.contains_key(&peer_hit) || self.relay_clients.contains_key(&peer_hit);
        a.relay_to = self
            .answering_via
            .filter(|(server, _)| *server == remote)
            .map(|(_, origin)| origin);
        a.relayed_origin = a.relay_to.map(|origin| (remote, origin));
        a.last_sent = Some(r2.clone());
        self.timers
            .set(&mut a, Some(now + self.config.exchange_complete));
        a.established_at = Some(now);
        let esp = keys.session.esp.clone();
        a.keys = Some(keys.session);
        self.assocs.insert(peer_hit, Box::new(a));
        self.stats.i2_accepted += 1;
        self.accepted_solution(generation, solution);
        tracing::debug!(peer = %peer_hit, "I2 accepted, sending R2");
        self.transmit(local, remote, &r2);
        self.install_esp(now, peer_hit)?;
        self.push_event(Event::Established {
            handle,
            peer: peer_hit,
            initiator: false,
            local,
            remote,
            keys: esp,
        });
        Ok(())
    }

    pub(super) fn on_r2(&mut self, now: Instant, bytes: &[u8], r2: &HipRepr) -> Result<(), Error> {
        let profile = self.profile;
        let a = self
            .assocs
            .get_mut(&r2.sender_hit)
            .ok_or(Error::Unexpected)?;
        if a.state != AssocState::I2Sent {
            return Err(Error::Unexpected);
        }
        let (Some(keys), Some(peer)) = (a.keys.as_mut(), a.peer.as_ref()) else {
            return Err(Error::Unexpected);
        };
        check_mac(
            bytes,
            profile,
            &keys.mac_in,
            param_type::HIP_MAC_2,
            &a.peer_host_id_tlv,
        )?;
        check_signature(bytes, peer, param_type::HIP_SIGNATURE)?;
        let spi_out = match r2.param(param_type::ESP_INFO) {
            Some(Param::EspInfo(info)) if info.new_spi > 255 => info.new_spi,
            _ => return Err(Error::MissingParam(param_type::ESP_INFO)),
        };
        keys.esp.spi_out = spi_out;
        let event = Event::Established {
            handle: a.handle,
            peer: a.peer_hit,
            initiator: true,
            local: a.local,
            remote: a.remote,
            keys: keys.esp.clone(),
        };
        a.state = AssocState::Established;
        self.timers.set(a, None);
        a.last_sent = None;
        a.established_at = Some(now);
        tracing::debug!(peer = %r2.sender_hit, "R2 accepted, association established");
        self.push_event(event);
        self.reg_granted(now, r2.sender_hit, r2);
        self.install_esp(now, r2.sender_hit)
    }

    // ---- responder state ------------------------------------------------------------

    /// Opens a new puzzle generation with a fresh R1 Diffie-Hellman key, signs the R1 for
    /// the base difficulty ahead of time, and forgets the generation before the previous.
    pub(super) fn start_generation(&mut self) {
        let number = self.secrets.generation();
        let dh = self.profile.dh_keypair(random32(&mut self.rng));
        if self.generations.len() == GENERATIONS {
            self.generations.pop_front();
        }
        self.generations.push_back(Generation {
            number,
            dh,
            templates: Vec::new(),
            solutions: HashMap::new(),
        });
        let _ = self.r1_template(number, self.config.difficulty.base_k);
    }

    /// The signed R1 of a generation and difficulty, built once and then reused.
    pub(super) fn r1_template(&mut self, generation: u64, k: u8) -> Result<HipRepr, Error> {
        let g = self
            .generations
            .iter()
            .position(|g| g.number == generation)
            .ok_or(Error::BadPuzzle)?;
        if let Some((_, t)) = self.generations[g]
            .templates
            .iter()
            .find(|(tk, _)| *tk == k)
        {
            return Ok(t.clone());
        }
        let mut r1 = HipRepr {
            next_header: 59,
            packet_type: PacketType::R1,
            version: 2,
            controls: 0,
            sender_hit: self.hit(),
            receiver_hit: Hit::NULL,
            params: vec![
                Param::R1Counter {
                    reserved: 0,
                    counter: generation,
                },
                Param::Puzzle(Puzzle {
                    k,
                    lifetime: self.config.puzzle_lifetime,
                    opaque: [0; 2],
                    i: vec![0; self.profile.rhash_len()],
                }),
                Param::DhGroupList(vec![self.profile.dh_group()]),
                Param::DiffieHellman {
                    group: self.profile.dh_group(),
                    public: self.generations[g].dh.public.clone(),
                },
                Param::HipCipher(self.config.hip_ciphers.clone()),
                Param::HostId(self.identity.public().host_id()),
                Param::HitSuiteList(vec![self.profile.hit_suite() << 4]),
            ]
            .into_iter()
            .chain(self.reg_info())
            .chain([
                Param::TransportFormatList(vec![TRANSPORT_FORMAT_ESP]),
                Param::EspTransform {
                    reserved: 0,
                    suites: self.config.esp_suites.clone(),
                },
            ])
            .chain(self.nat_offer())
            .collect(),
        };
        r1.params.sort_by_key(Param::ty);
        add_signature(&mut r1, &self.identity, param_type::HIP_SIGNATURE_2);
        // A handful of difficulties per generation at most: K moves one step at a time.
        let templates = &mut self.generations[g].templates;
        if templates.len() >= 8 {
            templates.remove(0);
        }
        templates.push((k, r1.clone()));
        Ok(r1)
    }
}

/// Keys derived from one KEYMAT, oriented for this host.
pub(super) struct Derived {
    enc_out: Zeroizing<Vec<u8>>,
    enc_in: Zeroizing<Vec<u8>>,
    session: SessionKeys,
}

/// KEYMAT for the exchange between `hit_i` and `hit_r`, cut into HIP and ESP keys and
/// oriented for this host: "gl" keys belong to the host with the greater HIT.
#[allow(clippy::too_many_arguments)]
pub(super) fn derive(
    profile: &dyn Profile,
    kij: &[u8],
    i: &[u8],
    j: &[u8],
    hit_i: Hit,
    hit_r: Hit,
    cipher: HipCipher,
    suite: u16,
    spi_in: u32,
    we_are_initiator: bool,
) -> Result<Derived, Error> {
    let seed = KeymatSeed {
        kij: Zeroizing::new(kij.to_vec()),
        i: i.to_vec(),
        j: j.to_vec(),
        hit_i,
        hit_r,
    };
    let hip_len = hip_keys_len(profile, cipher);
    let mut keymat = Zeroizing::new(vec![0u8; hip_len]);
    profile.keymat(kij, i, j, &hit_i, &hit_r, &mut keymat);
    let crate::crypto::HipKeys {
        enc_gl,
        int_gl,
        enc_lg,
        int_lg,
    } = draw_hip_keys(&keymat, profile, cipher);
    let we_are_greater = we_are_initiator == (hit_i > hit_r);
    let (enc_out, enc_in, mac_out, mac_in) = if we_are_greater {
        (enc_gl, enc_lg, int_gl, int_lg)
    } else {
        (enc_lg, enc_gl, int_lg, int_gl)
    };
    let (esp, keymat_next) = esp_keys_at(profile, &seed, hip_len, suite, spi_in, we_are_greater)?;
    Ok(Derived {
        enc_out,
        enc_in,
        session: SessionKeys {
            mac_out,
            mac_in,
            esp,
            seed,
            keymat_next,
        },
    })
}

/// The ESP keys drawn at KEYMAT `index` (RFC 7402 §7), oriented for this host, and the
/// index after them. `spi_out` is left 0 for the caller to fill in.
pub(super) fn esp_keys_at(
    profile: &dyn Profile,
    seed: &KeymatSeed,
    index: usize,
    suite: u16,
    spi_in: u32,
    we_are_greater: bool,
) -> Result<(EspKeys, usize), Error> {
    let (enc_len, auth_len) = esp_key_lens(suite).ok_or(Error::NoEspTransform)?;
    let end = index + 2 * (enc_len + auth_len);
    let mut keymat = Zeroizing::new(vec![0u8; end]);
    profile.keymat(
        &seed.kij,
        &seed.i,
        &seed.j,
        &seed.hit_i,
        &seed.hit_r,
        &mut keymat,
    );
    let crate::crypto::EspKeyMaterial {
        enc_gl,
        auth_gl,
        enc_lg,
        auth_lg,
    } = draw_esp_keys(&keymat, index, suite).ok_or(Error::NoEspTransform)?;
    let (enc_out, auth_out, enc_in, auth_in) = if we_are_greater {
        (enc_gl, auth_gl, enc_lg, auth_lg)
    } else {
        (enc_lg, auth_lg, enc_gl, auth_gl)
    };
    let keys = EspKeys {
        suite,
        spi_in,
        spi_out: 0,
        enc_in,
        auth_in,
        enc_out,
        auth_out,
    };
    Ok((keys, end))
}

/// Parses one complete TLV (the plaintext of ENCRYPTED).
pub(super) fn parse_tlv(bytes: &[u8]) -> Option<Param> {
    let ty = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
    let len = u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]) as usize;
    Param::parse(ty, bytes.get(4..4 + len)?).ok()
}

/// Length of a TLV with `len` bytes of contents, padding included.
pub(super) fn padded(len: usize) -> usize {
    11 + len - (len + 3) % 8
}

/// The address a puzzle of a routed exchange is bound to: none.
const UNBOUND: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

pub(super) fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// What besides the HITs and the initiator's address a puzzle is bound to: the address it
/// was issued from and its difficulty, so that an I2 cannot claim an easier K.
pub(super) fn puzzle_context(local: IpAddr, k: u8) -> Vec<u8> {
    let mut v = ip_bytes(local);
    v.push(k);
    v
}

/// The PUZZLE Opaque field: the low bits of the generation, so an I2 without R1_COUNTER
/// still names its puzzle's generation.
pub(super) fn opaque_of(generation: u64) -> [u8; 2] {
    (generation as u16).to_be_bytes()
}
