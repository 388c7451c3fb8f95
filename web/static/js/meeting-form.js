// The new-meeting form: choosing a board shows its time zone and proposes its next usual slot and duration,
// unless the coordinator already changed them.

import './api.js';

const form = document.querySelector('form[data-meeting-form]');
if (form) {
  const board = form.querySelector('[name="board_id"]');
  const date = form.querySelector('[name="date"]');
  const time = form.querySelector('[name="time"]');
  const duration = form.querySelector('[name="duration_min"]');
  const touched = new Set();
  for (const input of [date, time, duration]) input?.addEventListener('input', () => touched.add(input.name));
  board?.addEventListener('change', () => {
    for (const span of form.querySelectorAll('[data-zone-for]')) {
      const current = span.dataset.zoneFor === board.value;
      span.hidden = !current;
      if (!current) continue;
      if (date && !touched.has('date')) date.value = span.dataset.nextDate;
      if (time && !touched.has('time')) time.value = span.dataset.nextTime;
      if (duration && !touched.has('duration_min')) duration.value = span.dataset.duration;
    }
  });
}
