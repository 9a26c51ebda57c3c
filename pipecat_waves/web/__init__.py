"""The demo as a page to talk to: a browser, WebRTC, Silero VAD and ``WavesTTSService``.

``pipecat-waves demo --web`` serves ``page.html`` on 127.0.0.1 (:mod:`.server`)
and runs one Pipecat bot per browser connection over Pipecat's
``SmallWebRTCTransport`` (:mod:`.bot`). Needs the ``web`` extra
(``pipecat-ai[webrtc,silero]``).
"""
