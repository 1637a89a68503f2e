// htmx does not swap 4xx responses by default. A 400 from the clinic pages is the form again,
// with its inline errors: swap it in like a success. (Other errors still are not swapped.)
// A file, not an inline script: the Content-Security-Policy allows scripts from 'self' only.
document.addEventListener("htmx:beforeSwap", function (event) {
  if (event.detail.xhr.status === 400) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
