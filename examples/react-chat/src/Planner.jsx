import { useChat } from '@ai-sdk/react';
import { useState } from 'react';
import { planTransport, startPlan } from './tokenrelay';

// "Plan a trip": the plan starts on the native route, and useChat reads its stream; its id
// is in the URL (?plan=…), so a reload shows the plan again (for `stream_ttl_s` after its end)
export function Planner() {
  const [streamId, setStreamId] = useState(() => new URLSearchParams(location.search).get('plan'));
  const [error, setError] = useState(null);
  const show = id => {
    const url = new URL(location.href);
    url.searchParams.set('plan', id);
    history.replaceState(null, '', url);
    setStreamId(id);
  };
  return (
    <section className="planner">
      <h2>Plan a trip</h2>
      <form onSubmit={event => {
        event.preventDefault();
        const { location, start, end } = event.currentTarget.elements;
        setError(null);
        startPlan({ location: location.value, start_date: start.value, end_date: end.value })
          .then(show, failure => setError(failure.message));
      }}>
        <input name="location" placeholder="Where to?" required />
        <input name="start" type="date" required />
        <input name="end" type="date" required />
        <button>Plan</button>
      </form>
      {error && <p role="alert">{error}</p>}
      {streamId && <PlanStream key={streamId} streamId={streamId} />}
    </section>
  );
}

// one plan's stream, read from its start: GET /api/ui/streams/{streamId}
function PlanStream({ streamId }) {
  const { messages, status, error } = useChat({ id: streamId, transport: planTransport, resume: true });
  const parts = messages.at(-1)?.parts ?? [];
  const data = type => parts.find(part => part.type === type)?.data;
  const said = data('data-status'); // each status, progress and the plan replace the last
  const progress = data('data-progress');
  const plan = data('data-complete');
  const draft = parts.filter(part => part.type === 'text').map(part => part.text).join('');
  return (
    <div className="plan" data-status={status}>
      {said && <small>{said.message}</small>}
      {progress && <progress max={100} value={progress.progress} title={progress.message} />}
      {plan && (
        <article>
          <h3>{plan.title}</h3>
          {plan.days.map(day => (
            <div key={day.day} className="day">
              <h4>Day {day.day} · {day.date}: {day.title}</h4>
              <ul>
                {day.activities.map((activity, i) => (
                  <li key={i}>{activity.time} {activity.name}: {activity.description}</li>
                ))}
              </ul>
            </div>
          ))}
          <p className="total">Total: {plan.total_estimated_cost} {plan.currency}</p>
        </article>
      )}
      {error && <p role="alert">{error.message}</p>}
      {draft && (
        <details open={!plan}>
          <summary>The draft, as the model writes it</summary>
          <pre>{draft}</pre>
        </details>
      )}
    </div>
  );
}
