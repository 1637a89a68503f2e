/* CareVault sealed forms: a form that carries a password (registration, two-factor enrolment,
 * password reset, the officer's new-user form) sends it only inside an encrypted form packet.
 *
 * The password inputs have no name, only data-sealed-field="<field name>", so a submission that
 * bypasses this script carries no password (the server then says JavaScript is needed). On
 * submit this script fetches a single-use challenge, seals {field name: value} and puts the packet
 * into the hidden input "sealed_packet", then submits the form.
 *
 * Scheme (src/carevault/crypto/packets.py, "form packets"; login.js seals logins the same way):
 *   challenge = GET data-challenge-url -> {cid, nonce, issued, expires, server_key, key_id, alg}
 *   shared    = ECDH(ephemeral P-256 key, server_key)
 *   key       = HKDF-SHA256(shared, salt = nonce, info = "carevault-form/1" || cid) -> AES-256
 *   ct        = AES-256-GCM(key, iv = 12 random bytes,
 *                           canonical JSON {"fields": {...}, "nonce", "ts"},
 *                           additional data = "carevault-form/1|" || purpose || "|" || cid
 *                                             || "|" || binding)
 *   packet    = {cid, epk, iv, ct} (base64url), as JSON in the field "sealed_packet".
 * purpose and binding (the form's path) come from data-sealed-purpose / data-sealed-binding.
 *
 * A static file under the strict Content-Security-Policy: no inline script, no eval.
 */
"use strict";

(function () {
  const ALG = "ECDH-P256/HKDF-SHA256/AES-256-GCM";
  const DOMAIN = "carevault-form/1";
  const FAILED = "Your password could not be encrypted. Please reload the page and try again.";
  const encoder = new TextEncoder();

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 1) {
      binary += String.fromCharCode(bytes[i]);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromBase64url(text, size) {
    if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text)) {
      throw new Error("not base64url");
    }
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    const binary = atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    if (size !== undefined && bytes.length !== size) {
      throw new Error("wrong length");
    }
    return bytes;
  }

  function concat(parts) {
    let length = 0;
    parts.forEach(function (part) { length += part.length; });
    const out = new Uint8Array(length);
    let offset = 0;
    parts.forEach(function (part) { out.set(part, offset); offset += part.length; });
    return out;
  }

  function canonicalFields(fields) {
    // Members in sorted order, as the server's canonical JSON has them.
    const sorted = {};
    Object.keys(fields).sort().forEach(function (name) { sorted[name] = fields[name]; });
    return sorted;
  }

  async function seal(challenge, receivedAt, purpose, binding, fields) {
    if (!challenge || challenge.alg !== ALG || !Number.isInteger(challenge.issued)) {
      throw new Error("unsupported challenge");
    }
    const subtle = window.crypto.subtle;
    const cid = fromBase64url(challenge.cid, 16);
    const nonce = fromBase64url(challenge.nonce, 16);
    const curve = { name: "ECDH", namedCurve: "P-256" };
    const serverKey = await subtle.importKey(
      "raw", fromBase64url(challenge.server_key, 65), curve, false, []);
    const ephemeral = await subtle.generateKey(curve, false, ["deriveBits"]);
    const shared = await subtle.deriveBits(
      { name: "ECDH", public: serverKey }, ephemeral.privateKey, 256);
    const hkdf = await subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
    const key = await subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: nonce, info: concat([encoder.encode(DOMAIN), cid]) },
      hkdf, { name: "AES-GCM", length: 256 }, false, ["encrypt"]);
    const iv = window.crypto.getRandomValues(new Uint8Array(12));
    // The timestamp in server time, so a wrong clock on this computer does not matter.
    const ts = challenge.issued + Math.floor((performance.now() - receivedAt) / 1000);
    const plaintext = encoder.encode(
      JSON.stringify({ fields: canonicalFields(fields), nonce: challenge.nonce, ts: ts }));
    const aad = concat([
      encoder.encode(DOMAIN + "|" + purpose + "|"), cid, encoder.encode("|" + binding)]);
    const ct = await subtle.encrypt(
      { name: "AES-GCM", iv: iv, additionalData: aad, tagLength: 128 }, key, plaintext);
    const epk = await subtle.exportKey("raw", ephemeral.publicKey);
    return { cid: challenge.cid, epk: toBase64url(epk), iv: toBase64url(iv), ct: toBase64url(ct) };
  }

  function setUp(form) {
    const inputs = Array.prototype.slice.call(form.querySelectorAll("input[data-sealed-field]"));
    const packetField = form.querySelector("input[name=sealed_packet]");
    const errorBox = form.querySelector("[data-sealed-error]");
    const submit = form.querySelector("[data-sealed-submit]");
    if (!packetField) {
      return;
    }
    if (!window.isSecureContext || !window.crypto || !window.crypto.subtle) {
      const insecure = form.querySelector("[data-sealed-insecure]");
      if (insecure) {
        insecure.hidden = false;
      }
      return;
    }
    let busy = false;

    function fail() {
      busy = false;
      if (submit) {
        submit.disabled = false;
      }
      inputs.forEach(function (input) { input.value = ""; });
      if (errorBox) {
        errorBox.textContent = FAILED;
        errorBox.hidden = false;
      }
    }

    async function sealAndSubmit() {
      const fields = {};
      inputs.forEach(function (input) { fields[input.dataset.sealedField] = input.value; });
      const answer = await fetch(form.dataset.challengeUrl, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (!answer.ok) {
        throw new Error("no challenge");
      }
      const challenge = await answer.json();
      const packet = await seal(
        challenge, performance.now(), form.dataset.sealedPurpose, form.dataset.sealedBinding,
        fields);
      packetField.value = JSON.stringify(packet);
      // The inputs have no name, so submit() sends the packet and the other fields only.
      inputs.forEach(function (input) { input.value = ""; });
      form.submit();
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) {
        return;
      }
      busy = true;
      if (submit) {
        submit.disabled = true;
      }
      if (errorBox) {
        errorBox.hidden = true;
      }
      sealAndSubmit().catch(fail);
    });
    if (submit) {
      submit.disabled = false;
    }
  }

  document.querySelectorAll("form[data-sealed-purpose]").forEach(setUp);
})();
