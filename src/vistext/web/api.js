/* vistext web client: JSON API calls with the optional bearer token, and thumbnails that work with or without it. */
"use strict";
(function () {
  const TOKEN_KEY = "vistext-token";

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

  function headers() {
    const t = token();
    return t ? { Authorization: "Bearer " + t } : {};
  }

  async function request(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = Object.assign({}, opts.headers || {}, headers());
    const response = await fetch(path, opts);
    if (response.status === 401) {
      askToken();
    }
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new ApiError(response.status, message);
    }
    return response;
  }

  async function getJSON(path) { return (await request(path)).json(); }

  async function postForm(path, form) {
    return (await request(path, { method: "POST", body: form })).json();
  }

  function askToken() {
    const given = window.prompt("This server needs an access token (vistext serve --token):", token());
    if (given !== null) { localStorage.setItem(TOKEN_KEY, given.trim()); }
  }

  /* <img> cannot send an Authorization header: with a token, images come through fetch as blob URLs. */
  function setImage(img, url) {
    if (!token()) { img.src = url; return; }
    request(url).then((r) => r.blob()).then((blob) => {
      const objectUrl = URL.createObjectURL(blob);
      img.onload = () => URL.revokeObjectURL(objectUrl);
      img.src = objectUrl;
    }).catch(() => { img.alt = "unavailable"; });
  }

  /* A picture smaller than its box is shown at its own size (scale-down), not blown up to fill the box. */
  function noUpscale(img) {
    img.addEventListener("load", () => {
      const small = img.naturalWidth < img.clientWidth || img.naturalHeight < img.clientHeight;
      img.classList.toggle("small", small);
    });
  }

  function thumbUrl(id, size) { return "/api/images/" + id + "/thumbnail?size=" + (size || 256); }
  function imageUrl(id) { return "/api/images/" + id; }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function basename(path) { return String(path).split(/[\\/]/).pop(); }

  window.Vistext = { ApiError, request, getJSON, postForm, setImage, noUpscale, thumbUrl, imageUrl, askToken, token, el, basename };
})();
