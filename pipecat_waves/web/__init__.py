"""The demo as a page to talk to: a browser, WebRTC, Silero VAD and ``WavesTTSService``.

``pipecat-waves demo --web`` serves :mod:`page <pipecat_waves.web>` on
127.0.0.1 and runs one Pipecat bot per browser connection over Pipecat's
``SmallWebRTCTransport``. Needs the ``web`` extra (``pipecat-ai[webrtc,silero]``).
"""
