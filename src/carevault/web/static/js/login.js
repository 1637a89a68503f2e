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
 * Answers: 200 {ok, next}; 400 {ok: false, error} for every failure; 429 {ok: false, error,
 * retry_after} (and a Retry-After header) while sign-in is paused for the name or this computer.
 * The page shows the server's own words (they never say whether the account exists), as text.
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

  // A refusal the server explained: its words are shown as they are (as text, never markup).
  class ServerAnswer extends Error {
    constructor(message, retryAfter) {
      super(message);
      this.retryAfter = retryAfter;
    }
  }

  function secondsToWait(response, answer) {
    const fromBody = answer && Number.isInteger(answer.retry_after) ? answer.retry_after : 0;
    const header = parseInt(response.headers.get("Retry-After") || "", 10);
    return Math.max(fromBody, Number.isFinite(header) ? header : 0);
  }

  function pausedMessage(seconds) {
    const minutes = Math.max(1, Math.ceil(seconds / 60));
    return "Sign-in is paused for this account name or this computer; try again in "
      + minutes + (minutes === 1 ? " minute." : " minutes.");
  }

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
      let refusal = null;
      try {
        refusal = await challengeResponse.json();
      } catch (error) {
        refusal = null;
      }
      if (challengeResponse.status === 429 && refusal && typeof refusal.error === "string") {
        throw new ServerAnswer(refusal.error, secondsToWait(challengeResponse, refusal));
      }
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
    const told = answer && typeof answer.error === "string" && answer.error ? answer.error : "";
    if (response.status === 429) {
      const wait = secondsToWait(response, answer);
      throw new ServerAnswer(told || pausedMessage(wait), wait);
    }
    throw new ServerAnswer(told || FAILED, 0);
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
      function (error) {
        // The server's words when it gave some (one message for every failure, or when sign-in
        // is paused and for how long); otherwise (no network, no WebCrypto) the generic one.
        fail(error instanceof ServerAnswer ? error.message : FAILED);
      });
  });

  fields.disabled = false;
  username.focus();
})();
