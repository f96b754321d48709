import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// `npm run dev` serves the app and sends /api to tokenrelay (same origin: no CORS to set up)
export default defineConfig({
  plugins: [react()],
  server: { proxy: { '/api': process.env.TOKENRELAY_URL ?? 'http://127.0.0.1:8000' } },
});
