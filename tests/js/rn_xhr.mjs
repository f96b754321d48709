// An XMLHttpRequest for Node that behaves as React Native's does for a streamed response:
// `responseText` grows and `readystatechange` fires with every chunk (LOADING), then DONE;
// a failed connection ends in DONE with status 0 and `onerror`. Every request is recorded
// in XMLHttpRequest.requests ({method, url, headers, aborted}), for the tests.
import http from 'node:http';

export class XMLHttpRequest {
  static UNSENT = 0;
  static OPENED = 1;
  static HEADERS_RECEIVED = 2;
  static LOADING = 3;
  static DONE = 4;
  static requests = [];

  readyState = 0;
  status = 0;
  responseText = '';
  timeout = 0;
  withCredentials = false;
  onreadystatechange = null;
  onerror = null;
  #headers = {};
  #method = 'GET';
  #url = '';
  #request = null;
  #record = null;

  open(method, url) {
    this.#method = method;
    this.#url = url;
    this.#set(XMLHttpRequest.OPENED);
  }

  setRequestHeader(name, value) {
    this.#headers[name] = value;
  }

  send(body) {
    this.#record = { method: this.#method, url: this.#url, headers: { ...this.#headers }, aborted: false };
    XMLHttpRequest.requests.push(this.#record);
    const decoder = new TextDecoder();
    this.#request = http.request(this.#url, { method: this.#method, headers: this.#headers }, (response) => {
      this.status = response.statusCode;
      this.#set(XMLHttpRequest.HEADERS_RECEIVED);
      response.on('data', (chunk) => {
        this.responseText += decoder.decode(chunk, { stream: true });
        this.#set(XMLHttpRequest.LOADING);
      });
      response.on('end', () => this.#set(XMLHttpRequest.DONE));
      response.on('error', () => this.#fail());
    });
    this.#request.on('error', () => this.#fail());
    this.#request.end(body);
  }

  abort() {
    if (this.#record) this.#record.aborted = true;
    this.#request?.destroy();
  }

  #set(state) {
    if (this.#record?.aborted) return;
    this.readyState = state;
    this.onreadystatechange?.();
  }

  #fail() {
    if (this.#record?.aborted) return;
    this.status = 0;
    this.#set(XMLHttpRequest.DONE);
    this.onerror?.();
  }
}
