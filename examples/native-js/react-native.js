// React Native has no EventSource: react-native-sse brings one (over XMLHttpRequest).
import EventSource from 'react-native-sse';

const TOKENRELAY = 'http://10.0.2.2:8000'; // the Android emulator's name for your machine
const API_KEY = 'your-api-key'; // one of the server's TOKENRELAY_API_KEYS

/**
 * Stream the answer to `message`: onText(the text so far), then onDone(`done` event) or
 * onError(`error` event, or {status, code, message, …} when the server refused at once).
 * Returns {stop}: stops the answer on the server.
 */
export function streamAnswer(message, { onText, onDone, onError }) {
  const query = new URLSearchParams({ message, event_names: 'false' });
  // GET: when a response ends early, react-native-sse asks again with Last-Event-ID and
  // tokenrelay resumes the same answer; event_names=false: every event is a `message`
  const source = new EventSource(`${TOKENRELAY}/api/chat/stream?${query}`, {
    headers: { Authorization: `Bearer ${API_KEY}` },
  });
  let text = '';
  let streamId = null;
  source.addEventListener('message', (frame) => {
    const event = JSON.parse(frame.data);
    if (event.type === 'metadata') streamId = event.stream_id;
    if (event.type === 'token') onText((text += event.content));
    if (event.type === 'done' || event.type === 'error') {
      source.close(); // else react-native-sse asks the server again when the response ends
      if (event.type === 'done') onDone(event);
      else onError(event);
    }
  });
  source.addEventListener('error', (failure) => {
    if (failure.xhrStatus >= 400) { // refused before the stream started: our JSON body
      source.close();
      onError({ status: failure.xhrStatus, ...JSON.parse(failure.message) });
    } // anything else is react-native-sse's own (a network error, a timeout)
  });
  return {
    stop: () => streamId && fetch(`${TOKENRELAY}/api/streams/${streamId}/cancel`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${API_KEY}` },
    }),
  };
}
