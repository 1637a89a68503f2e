/* CareVault login: the username and password leave the browser only inside an encrypted login
 * packet, never as a readable form post.
 *
 * Scheme ECDH-P256/HKDF-SHA256/AES-256-GCM (src/carevault/crypto/packets.py, docs/crypto.md
 * "Login packets"):
 *   challenge = GET data-challenge-url -> {cid, nonce, issued, expires, server_key, key_id, alg}
 *   shared    = ECDH(ephemeral P-256 key, server_key)                 (32 bytes)
 *   key       = HKDF-SHA256(shared, salt = nonce, info = "carevault-login/1" || cid) -> AES-256
 *   ct        = AES-256-GCM(key, iv = 12 random bytes,
 *                           canonical JSON {"nonce", "password", "ts", "username"},
 *                           additional data = "carevault-login/1|" || cid)
 *   POST data-packet-url {cid, epk, iv, ct} (base64url) with the CSRF token in X-CSRFToken.
 *
 * A static file under the strict Content-Security-Policy: no inline script, no eval. WebCrypto
 * exists only in a secure context (HTTPS, or http://localhost / 127.0.0.1), so elsewhere the
 * form stays disabled and says why.
 */
"use strict";

(function () {
  const ALG = "ECDH-P256/HKDF-SHA256/AES-256-GCM";
  const DOMAIN = "carevault-login/1";
  const FAILED = "Login failed.";

  const form = document.getElementById("login-form");
  if (!form) {
    return;
  }
  const fields = form.querySelector("fieldset");
  const username = document.getElementById("id_username");
  const password = document.getElementById("id_password");
  const errorBox = document.getElementById("login-error");
  const encoder = new TextEncoder();

  if (!window.isSecureContext || !window.crypto || !window.crypto.subtle) {
    document.getElementById("login-insecure").hidden = false;
    return;
  }

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

  function concat(first, second) {
    const out = new Uint8Array(first.length + second.length);
    out.set(first);
    out.set(second, first.length);
    return out;
  }

  async function seal(challenge, receivedAt, user, pass) {
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
      { name: "HKDF", hash: "SHA-256", salt: nonce, info: concat(encoder.encode(DOMAIN), cid) },
      hkdf, { name: "AES-GCM", length: 256 }, false, ["encrypt"]);
    const iv = window.crypto.getRandomValues(new Uint8Array(12));
    // The timestamp in server time (issued + time since the challenge arrived), so a wrong
    // clock on this computer does not make the login fail.
    const ts = challenge.issued + Math.floor((performance.now() - receivedAt) / 1000);
    // Canonical JSON: members in sorted order, no white space (stringify keeps this order).
    const plaintext = encoder.encode(
      JSON.stringify({ nonce: challenge.nonce, password: pass, ts: ts, username: user }));
    const ct = await subtle.encrypt(
      { name: "AES-GCM", iv: iv, additionalData: concat(encoder.encode(DOMAIN + "|"), cid),
        tagLength: 128 },
      key, plaintext);
    const epk = await subtle.exportKey("raw", ephemeral.publicKey);
    return { cid: challenge.cid, epk: toBase64url(epk), iv: toBase64url(iv), ct: toBase64url(ct) };
  }

  function sameOrigin(url) {
    try {
      return typeof url === "string"
        && new URL(url, window.location.href).origin === window.location.origin;
    } catch (error) {
      return false;
    }
  }

  let busy = false;

  function fail(message) {
    busy = false;
    fields.disabled = false;
    password.value = "";
    errorBox.textContent = message;
    errorBox.hidden = false;
    password.focus();
  }

  async function logIn() {
    const user = username.value;
    const pass = password.value;
    const challengeResponse = await fetch(form.dataset.challengeUrl, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    });
    if (!challengeResponse.ok) {
      throw new Error("no challenge");
    }
    const challenge = await challengeResponse.json();
    const packet = await seal(challenge, performance.now(), user, pass);
    let url = form.dataset.packetUrl;
    if (form.dataset.next) {
      url += "?" + new URLSearchParams({ next: form.dataset.next }).toString();
    }
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value,
      },
      body: JSON.stringify(packet),
    });
    let answer = null;
    try {
      answer = await response.json();
    } catch (error) {
      answer = null;
    }
    if (response.ok && answer && answer.ok === true && sameOrigin(answer.next)) {
      return answer.next;
    }
    throw new Error(FAILED);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) {
      return;
    }
    busy = true;
    errorBox.hidden = true;
    const pending = logIn();
    fields.disabled = true;
    pending.then(
      function (next) {
        password.value = "";
        window.location.assign(next);
      },
      function () {
        // One message for every failure, as the server gives one answer for every failure.
        fail(FAILED);
      });
  });

  fields.disabled = false;
  username.focus();
})();
